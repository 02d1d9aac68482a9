"""The format registry: ``@register`` an exporter; the export pipeline runs them in order."""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import torch
import tqdm
from torch import nn

from medclass.config import ExportParams
from medclass.errors import exception_line


class ToolchainMissing(Exception):  # noqa: N818 (a reason to skip, not an error)
    """The converter or runtime for a format is not available here; the message is the reason."""


@dataclass(frozen=True)
class ExportContext:
    """What every exporter gets: the deployable model (eval, CPU), an input batch, metadata."""

    model: nn.Module
    example: torch.Tensor
    meta: dict[str, Any]
    params: ExportParams
    out_dir: Path


ExportFn = Callable[[ExportContext, Path], "dict[str, Any] | None"]
InspectFn = Callable[[Path, ExportContext], "dict[str, Any]"]
PreflightFn = Callable[[ExportParams], None]


@dataclass(frozen=True)
class Exporter:
    """One export format: ``export(ctx, dest)`` writes the artifact (returns extra report fields).

    Exporters may report ``precision`` (default fp32) in that dict. ``inspect(dest, ctx)`` is an
    optional static check of the written artifact (raises on a mismatch). Per-model gaps live
    in ``fixes`` (``FIXES`` / ``UNSUPPORTED``). ``preflight(params)`` checks the format's
    options before anything is exported (raises ``MedclassError`` naming the option and fix).
    """

    name: str
    filename: str
    export: ExportFn
    inspect: InspectFn | None = None
    preflight: PreflightFn | None = None
    extra_files: tuple[str, ...] = ()  # written beside ``filename`` (removed with it on failure)


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence the deprecation and tracer warnings TorchScript emits for every model."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


_CONVERTER_ENV = {"LITERT_TORCH_SHOW_PROGRESS": "n"}
_CONVERTER_PACKAGES = ("coremltools", "litert_torch")
_CONVERTER_LOGGERS = ("", "coremltools", "jax", "absl", "litert_torch", "torch.onnx")


@contextlib.contextmanager
def _quiet_logs(level: int = logging.ERROR) -> Iterator[None]:
    """Raise the root and converter loggers to ``level`` and ignore warnings, then restore."""
    loggers = [logging.getLogger(name) for name in _CONVERTER_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), level))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, old in zip(loggers, levels, strict=True):
            lg.setLevel(old)


@contextlib.contextmanager
def quiet_converters() -> Iterator[None]:
    """Silence converter progress bars, INFO logs and warnings (errors still propagate).

    Progress bars are turned off in converter modules already imported: import the converter
    before entering.
    """
    saved_env = {k: os.environ.get(k) for k in _CONVERTER_ENV}
    os.environ.update(_CONVERTER_ENV)
    try:
        with _quiet_logs(), quiet_jit(), contextlib.ExitStack() as stack:
            silent_bar = functools.partial(tqdm.tqdm, disable=True)
            for name, module in list(sys.modules.items()):
                if name.split(".")[0] not in _CONVERTER_PACKAGES:
                    continue
                for attr in ("tqdm", "_tqdm"):
                    if getattr(module, attr, None) is tqdm.tqdm:
                        stack.enter_context(mock.patch.object(module, attr, silent_bar))
            yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (stage errors and reports stay on one line)."""
    return exception_line(exc, with_type=True, limit=300)


FORMATS: dict[str, Exporter] = {}


def register(exporter: Exporter) -> Exporter:
    """Add ``exporter`` to ``FORMATS`` (its name must be one of ``config.ExportFormat``)."""
    if exporter.name in FORMATS:
        raise ValueError(f"export format {exporter.name!r} registered twice")
    FORMATS[exporter.name] = exporter
    return exporter


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise ``ToolchainMissing`` naming the extra that installs it."""
    try:
        with _quiet_logs():  # converters log version/platform notices when imported
            return importlib.import_module(module)
    except ImportError as exc:
        hint = f"pip install -e '.[{extra}]'"
        root = module.split(".")[0]
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == root:
            raise ToolchainMissing(f"{root} not installed ({hint})") from exc
        detail = (str(exc).splitlines() or [""])[0]
        raise ToolchainMissing(f"{root} cannot be imported ({detail}; {hint})") from exc
