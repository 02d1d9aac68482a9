"""TensorRT: serialized engines built from the ONNX export, ``model.engine`` (fp32) and, with
``export.tensorrt_fp16``, ``model_fp16.engine`` (fp16 weights and compute, fp32 input/output).

A TensorRT engine cannot be built without an NVIDIA GPU: the builder compiles and times its
kernels on the CUDA device the engine is for. Without one the format is skipped with ``no CUDA
device`` (checked before ``tensorrt`` is imported, so a CPU machine without the package reports
the same); with one it needs the ``tensorrt`` extra (``pip install -e '.[tensorrt]'``). Engines
have one optimisation profile for batch 1..``MAX_BATCH`` and are tied to the GPU model and
TensorRT version that built them.

TensorRT 11 builds strongly typed networks only (``BuilderFlag.FP16`` was removed): precision
lives in the ONNX graph. The fp32 engine is built with TF32 off, so it meets
``export.tolerance``; the fp16 engine is built from the graph converted by ONNX Runtime's
float16 converter. The pipeline checks ``model.engine`` like every format; the fp16 engine is
checked here (report key ``fp16``) against ``export.fp16_tolerance`` (top-1 agreement reported).
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
OPT_BATCH = 32  # the batch TensorRT tunes for (and the pipeline's latency batch)
FP16_FILENAME = "model_fp16.engine"
NO_CUDA = "no CUDA device"


def require_tensorrt() -> Any:
    """The ``tensorrt`` module; ``ToolchainMissing`` without a CUDA device or the package."""
    if not torch.cuda.is_available():
        raise ToolchainMissing(NO_CUDA)
    return require("tensorrt", "tensorrt")


def fp16_onnx(src: Path, dest: Path) -> None:
    """Write ``src`` (an fp32 ONNX file) to ``dest`` with fp16 weights and compute.

    ONNX Runtime's converter keeps the graph input/output float32 (a cast each) and leaves ops
    it lists as fp16-unsafe in float32; it appends the casts at the end of the node list, so the
    nodes are sorted topologically again (ONNX requires it).
    """
    onnx = require("onnx", "tensorrt")
    float16 = require("onnxruntime.transformers.float16", "tensorrt")
    onnx_model = require("onnxruntime.transformers.onnx_model", "tensorrt")
    proto = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx_model.OnnxModel(proto).topological_sort(is_deterministic=True)
    onnx.save(proto, str(dest))


def _network_flags(trt: Any) -> int:
    """STRONGLY_TYPED: required for typed graphs on TensorRT 10, accepted (always on) on 11."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def build_engine(trt: Any, onnx_path: Path, shape: tuple[int, ...]) -> bytes:
    """Serialized engine of ``onnx_path`` for inputs ``(N, *shape)``, 1 <= N <= ``MAX_BATCH``."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)  # owns the weights: keep it alive until the build
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.clear_flag(trt.BuilderFlag.TF32)  # fp32 math stays fp32 (export.tolerance)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, *shape), (min(OPT_BATCH, MAX_BATCH), *shape),
                      (MAX_BATCH, *shape))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(f"TensorRT engine build failed for {onnx_path.name} "
                           "(see the TensorRT log above)")
    return bytes(engine)


def check_fp16(ctx: ExportContext, path: Path) -> dict[str, Any]:
    """Parity of the fp16 engine (full batch and batch 1) vs the deployable model, and latency.

    Raises the pipeline's ``ParityError`` when ``max_abs_diff`` exceeds
    ``export.fp16_tolerance``.
    """
    from medclass.export.parity import compare, median_latency_ms, parity_failure, tile_batch
    from medclass.export.pipeline import ParityError  # lazy: the pipeline imports this package
    from medclass.export.runtime import load_runner

    runner = load_runner(path, "tensorrt")
    x = ctx.example.numpy()
    with torch.no_grad():
        reference = ctx.model(ctx.example).float().numpy()
    full = compare(reference, runner(x))
    single = compare(reference[:1], runner(x[:1]))
    result: dict[str, Any] = {
        "max_abs_diff": max(full["max_abs_diff"], single["max_abs_diff"]),
        "top1_agreement": full["top1_agreement"],
    }
    failure = parity_failure(result, ctx.params.fp16_tolerance, strict_top1=False)
    if failure:
        raise ParityError(f"fp16 engine {failure}")
    runs = ctx.params.latency_runs
    result["latency_ms_b1"] = median_latency_ms(runner, x[:1], runs)
    result["latency_ms_b32"] = median_latency_ms(runner, tile_batch(x, OPT_BATCH), runs)
    return result


def _fp32_onnx(ctx: ExportContext, tmp: Path) -> Path:
    """This run's ``model.onnx`` when the onnx format wrote it, else a temporary export."""
    existing = ctx.out_dir / "model.onnx"
    if existing.is_file():
        return existing
    path = tmp / "model.onnx"
    write_onnx(ctx.model, ctx.example, path, ctx.params.onnx_opset)
    return path


def _export_fp16(trt: Any, ctx: ExportContext, onnx_path: Path, tmp: Path) -> dict[str, Any]:
    """Build, write and check ``model_fp16.engine`` (removed again if any step fails)."""
    half = tmp / "model_fp16.onnx"
    fp16_onnx(onnx_path, half)
    dest = ctx.out_dir / FP16_FILENAME
    try:
        engine = build_engine(trt, half, tuple(ctx.example.shape[1:]))
        with atomic_path(dest) as tmp_file:
            tmp_file.write_bytes(engine)
        checked = check_fp16(ctx, dest)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return {"file": FP16_FILENAME, "precision": "fp16", "size_bytes": dest.stat().st_size,
            "tolerance": ctx.params.fp16_tolerance, **checked}


def export_tensorrt(ctx: ExportContext, dest: Path) -> dict[str, Any]:
    """Write the fp32 engine to ``dest`` and, with ``export.tensorrt_fp16``, the fp16 one."""
    trt = require_tensorrt()
    info: dict[str, Any] = {"precision": "fp32", "tensorrt": trt.__version__,
                            "gpu": torch.cuda.get_device_name(0), "max_batch": MAX_BATCH}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        onnx_path = _fp32_onnx(ctx, tmp)
        engine = build_engine(trt, onnx_path, tuple(ctx.example.shape[1:]))
        with atomic_path(dest) as tmp_file:
            tmp_file.write_bytes(engine)
        if ctx.params.tensorrt_fp16:
            info["fp16"] = _export_fp16(trt, ctx, onnx_path, tmp)
    return info


register(Exporter("tensorrt", "model.engine", export_tensorrt, extra_files=(FP16_FILENAME,)))
