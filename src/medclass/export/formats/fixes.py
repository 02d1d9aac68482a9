"""Small, registered workarounds for converter gaps, applied around one format's conversion.

``FIXES[(format, model)]`` is a context manager factory ``fix(model, example)``; the pipeline
enters it while that format converts that model. ``UNSUPPORTED[(format, model)]`` is the reason
a known gap has no fix yet (reported as ``skipped: unsupported …``). Every fix relies on the
exported input size being fixed: only the batch dimension stays dynamic.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any
from unittest import mock

import torch
from torch import nn

Fix = Callable[[nn.Module, torch.Tensor], AbstractContextManager[None]]
FIXES: dict[tuple[str, str], Fix] = {}
TRACED = ("torchscript", "onnx", "coreml", "tflite", "tensorrt")  # formats that trace the model
UNSUPPORTED: dict[tuple[str, str], str] = {}


def register_fix(formats: tuple[str, ...], models: tuple[str, ...]) -> Callable[[Fix], Fix]:
    """Register ``fix`` for every (format, model) pair."""

    def deco(fix: Fix) -> Fix:
        for fmt in formats:
            for name in models:
                FIXES[(fmt, name)] = fix
        return fix

    return deco


def applied(fmt: str, model_name: str, model: nn.Module, example: torch.Tensor
            ) -> AbstractContextManager[Any]:
    """The registered fix for ``(fmt, model_name)``, or a no-op context."""
    fix = FIXES.get((fmt, model_name))
    return fix(model, example) if fix is not None else contextlib.nullcontext()


def _static_round(value: Any) -> int:
    """``round`` that also takes a traced 0-d tensor (recorded as a constant: the size is fixed)."""
    return round(float(value))


@register_fix(TRACED, ("deit", "vit_hybrid"))
@contextlib.contextmanager
def static_vit_geometry(model: nn.Module, example: torch.Tensor) -> Iterator[None]:
    """ViT-style input fitting and position-embedding resize as constants of the export size.

    * ``torch.jit.trace`` turns ``x.shape`` into tensors, and ``fit_input``'s ``round()`` of
      them fails: ``round`` in the model's module accepts them and records a constant.
    * ``aten._upsample_bicubic2d_aa`` (timm's ``resample_abs_pos_embed``) has no ONNX/LiteRT/Core
      ML lowering; the resized embedding depends only on the weights and the input size, so it
      is computed once eagerly and the converter sees a constant.
    """
    module = importlib.import_module(type(model).__module__)
    original = module.resample_abs_pos_embed
    cache: dict[tuple[Any, ...], torch.Tensor] = {}

    def key(posemb: torch.Tensor, new_size: Any) -> tuple[Any, ...]:
        return tuple(int(s) for s in posemb.shape), tuple(int(s) for s in new_size)

    def record(posemb: torch.Tensor, new_size: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = original(posemb, new_size, *args, **kwargs)
        cache[key(posemb, new_size)] = out.detach().clone()
        return out

    def frozen(posemb: torch.Tensor, new_size: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        return cache[key(posemb, new_size)]

    with torch.no_grad(), mock.patch.object(module, "resample_abs_pos_embed", record):
        model(example[:1])
    with (mock.patch.object(module, "resample_abs_pos_embed", frozen),
          mock.patch.object(module, "round", _static_round, create=True)):
        yield


def register_unsupported(formats: tuple[str, ...], models: tuple[str, ...], reason: str) -> None:
    """Record a known converter gap without a fix (the format is skipped for these models)."""
    for fmt in formats:
        for name in models:
            UNSUPPORTED[(fmt, name)] = reason


# Found by exporting every registered backbone at tiny width (32 px); TensorRT reads the ONNX file.
register_unsupported(
    ("torchscript", "onnx", "tensorrt"), ("dynamic_conv",),
    "per-sample kernels run as one grouped conv with batch x channels groups, which a traced "
    "graph freezes at the traced batch size")
register_unsupported(
    ("onnx", "tensorrt"), ("swin",),
    "shifted windows roll by amounts computed from the feature size, which neither ONNX "
    "exporter can express")
register_unsupported(
    ("onnx", "tensorrt"), ("maxvit",),
    "the exported relative-position gather is only valid at the traced batch size")
register_unsupported(
    ("coreml",), ("swin", "maxvit"),
    "coremltools cannot convert the window/grid attention (aliasing ops, traced sizes)")
register_unsupported(
    ("coreml",), ("inception_fsd",),
    "coremltools converts adaptive pooling only for a known input size (the batch is dynamic)")
