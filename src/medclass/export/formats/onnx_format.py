"""ONNX: ``torch.onnx.export`` with a dynamic batch axis, one file.

The metadata JSON is stored in the model's ``metadata_props`` (key ``medclass``). Weights go to
external data only when the model exceeds protobuf's 2 GB limit. ``export.onnxslim`` simplifies
the graph with onnxslim; without the package that option is an error (checked before export).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from medclass.config import ExportParams
from medclass.errors import MedclassError
from medclass.export.formats.base import (
    ExportContext,
    Exporter,
    one_line,
    quiet_converters,
    register,
    require,
)
from medclass.export.metadata import INPUT_NAME, OUTPUT_NAME
from medclass.io import atomic_path

ONNX_METADATA_KEY = "medclass"
_PROTOBUF_LIMIT = 2**31 - 1
ONNXSLIM_MISSING = ("export.onnxslim is true but onnxslim is not installed; "
                    "pip install onnxslim or set export.onnxslim: false")


def require_onnxslim() -> ModuleType:
    """The ``onnxslim`` module, or ``MedclassError`` (the option is set, the package absent)."""
    try:
        return importlib.import_module("onnxslim")
    except ImportError as exc:
        raise MedclassError(ONNXSLIM_MISSING) from exc


def check_onnx_options(params: ExportParams) -> None:
    """Preflight: ``export.onnxslim: true`` needs the onnxslim package."""
    if params.onnxslim:
        require_onnxslim()


def write_onnx(model: torch.nn.Module, example: torch.Tensor, dest: Path, opset: int) -> str:
    """Export ``model`` to ``dest`` with a dynamic batch axis (``input`` → ``logits``).

    Tries the TorchScript-based exporter first (robust for our custom layers), then the
    ``torch.export``-based one (specialises the fixed spatial size, so it handles models whose
    Python shape arithmetic the tracer cannot record). Returns the exporter used.
    """
    try:
        with quiet_converters(), contextlib.redirect_stdout(io.StringIO()):  # graph dumps
            torch.onnx.export(
                model, (example,), str(dest), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )
        return "torchscript"
    except Exception as legacy:  # noqa: BLE001 (any exporter error: try the other exporter)
        legacy_error = one_line(legacy)
    try:
        batch = torch.export.Dim("batch", min=1, max=65536)
        with quiet_converters(), contextlib.redirect_stdout(io.StringIO()):
            program = torch.onnx.export(
                model, (example,), None, dynamo=True, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},), verbose=False, report=False,
            )
            program.save(str(dest))
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(f"TorchScript exporter: {legacy_error}; "
                           f"torch.export exporter: {one_line(exc)}") from exc
    return "dynamo"


def export_onnx(ctx: ExportContext, dest: Path) -> dict[str, Any]:
    """ONNX file with metadata; checked with ``onnx.checker``."""
    onnx = require("onnx", "onnx")
    info: dict[str, Any] = {"opset": ctx.params.onnx_opset}
    with atomic_path(dest) as tmp:
        info["exporter"] = write_onnx(ctx.model, ctx.example, tmp, ctx.params.onnx_opset)
        proto = onnx.load(str(tmp))
        if ctx.params.onnxslim:
            proto = require_onnxslim().slim(proto)
            info["onnxslim"] = True
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(ctx.meta)
        external = proto.ByteSize() > _PROTOBUF_LIMIT
        onnx.save(proto, str(tmp), save_as_external_data=external,
                  location=f"{dest.name}.data" if external else None)
        onnx.checker.check_model(str(tmp))
    info["external_data"] = external
    return info


register(Exporter("onnx", "model.onnx", export_onnx, preflight=check_onnx_options))
