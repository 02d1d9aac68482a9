"""TensorRT: a serialized engine built from the ONNX export (FP16 when the GPU supports it).

Needs the ``tensorrt`` package (``pip install -e '.[tensorrt]'``) and a CUDA device; otherwise
the format is skipped with that reason. The engine has an optimisation profile for batch
1..``MAX_BATCH`` and is tied to the GPU model and TensorRT version it was built with.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from medclass.export.formats.base import (
    ExportContext,
    Exporter,
    ToolchainMissing,
    register,
    require,
)
from medclass.export.formats.onnx_format import write_onnx
from medclass.export.metadata import INPUT_NAME
from medclass.io import atomic_path

MAX_BATCH = 64


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, or ``ToolchainMissing`` (package or CUDA device absent)."""
    trt = require("tensorrt", "tensorrt")
    if not torch.cuda.is_available():
        raise ToolchainMissing("no CUDA device (TensorRT engines need an NVIDIA GPU)")
    return trt


def _build(trt: Any, onnx_bytes: bytes, shape: tuple[int, ...], fp16: bool) -> tuple[bytes, bool]:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    c, h, w = shape
    profile.set_shape(INPUT_NAME, (1, c, h, w), (min(32, MAX_BATCH), c, h, w),
                      (MAX_BATCH, c, h, w))
    config.add_optimization_profile(profile)
    use_fp16 = fp16 and bool(getattr(builder, "platform_has_fast_fp16", True))
    if use_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError("TensorRT engine build failed (see the TensorRT log above)")
    return bytes(engine), use_fp16


def export_tensorrt(ctx: ExportContext, dest: Path) -> dict[str, Any]:
    """Build from ``model.onnx`` in the export folder, or from a temporary ONNX export."""
    trt = require_tensorrt()
    onnx_path = ctx.out_dir / "model.onnx"
    if onnx_path.is_file():
        onnx_bytes = onnx_path.read_bytes()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            write_onnx(ctx.model, ctx.example, path, ctx.params.onnx_opset)
            onnx_bytes = path.read_bytes()
    engine, fp16 = _build(trt, onnx_bytes, tuple(ctx.example.shape[1:]),
                          ctx.params.tensorrt_fp16)
    with atomic_path(dest) as tmp_file:
        tmp_file.write_bytes(engine)
    return {"precision": "fp16" if fp16 else "fp32", "tensorrt": trt.__version__,
            "gpu": torch.cuda.get_device_name(0), "max_batch": MAX_BATCH}


register(Exporter("tensorrt", "model.engine", export_tensorrt))
