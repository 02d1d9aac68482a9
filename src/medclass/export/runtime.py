"""Load any exported artifact and run NumPy batches through it: ``load_runner(path)(x)``.

Runtimes: PyTorch (state dict + metadata, weights-only load), TorchScript, ONNX Runtime (CPU),
LiteRT (``ai_edge_litert``), Core ML (macOS only) and TensorRT (CUDA only). Inputs are NCHW
float32 normalised as the metadata says; outputs are float32 logits (N, num_classes).
"""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medclass.errors import MedclassError
from medclass.export.formats.base import ToolchainMissing, one_line, quiet_jit, require
from medclass.export.formats.onnx_format import ONNX_METADATA_KEY
from medclass.export.formats.torch_formats import TS_EXTRA_FILE
from medclass.export.metadata import INPUT_NAME, OUTPUT_NAME, check_metadata, sidecar_metadata
from medclass.io import load_checkpoint

Forward = Callable[[np.ndarray], np.ndarray]
Loaded = tuple[Forward, "dict[str, Any] | None"]

SUFFIX_KINDS = {".onnx": "onnx", ".tflite": "tflite", ".ts": "torchscript",
                ".mlpackage": "coreml", ".mlmodel": "coreml", ".engine": "tensorrt",
                ".plan": "tensorrt", ".pt": "pytorch", ".pth": "pytorch"}

SIDECAR_ONLY = frozenset({"tflite", "tensorrt"})  # formats whose metadata is metadata.json


class NotRunnable(Exception):  # noqa: N818 (a reason, reported as "skipped")
    """The artifact cannot run on this machine; the message says why."""


@dataclass
class Runner:
    """A loaded artifact: ``runner(x)`` maps a float32 NCHW batch to float32 logits."""

    path: Path
    kind: str
    meta: dict[str, Any]
    forward: Forward

    @property
    def input_shape(self) -> tuple[int, int, int]:
        size = int(self.meta["image_size"])
        return int(self.meta["channels"]), size, size

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise MedclassError(f"{self.path}: input shape {x.shape} != (N, *{self.input_shape})")
        if len(x) == 0:
            return np.zeros((0, len(self.meta["classes"])), dtype=np.float32)
        return np.asarray(self.forward(x), dtype=np.float32)


def normalise(images: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """uint8 NCHW → float32 ``(x / 255 - mean) / std`` (the training transform, no augmentation)."""
    return normalise_views(images, meta)[0]


def normalise_views(
    images: np.ndarray, meta: dict[str, Any], tta: str = "none"
) -> list[np.ndarray]:
    """The test-time views (``evaluate.tta``'s ``none``/``flip``/``flip_rot``) of ``normalise``."""
    from medclass.data.dataset import BatchTransform

    x = torch.from_numpy(np.array(images, dtype=np.uint8))  # a copy: the cache is read-only
    views = BatchTransform(meta["mean"], meta["std"]).views(x, tta)
    return [v.contiguous().numpy() for v in views]


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold ``code/``; ``torch.save`` checkpoints do not."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in f"/{n}" for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def detect_kind(path: str | Path) -> str:
    """The runtime for ``path`` from its suffix (``.pt`` may be a TorchScript archive)."""
    p = Path(path)
    kind = SUFFIX_KINDS.get(p.suffix.lower())
    if kind is None:
        raise MedclassError(f"{p}: unknown model format; use one of {sorted(SUFFIX_KINDS)}")
    if kind == "pytorch" and _is_torchscript(p):
        return "torchscript"
    return kind


def _torch_forward(module: Callable[[torch.Tensor], torch.Tensor]) -> Forward:
    def forward(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).float().numpy()

    return forward


def build_model(meta: dict[str, Any]) -> torch.nn.Module:
    """The backbone described by ``meta`` (fused first when the weights were re-parameterised)."""
    from medclass.models.rebuild import model_from_meta

    return model_from_meta(meta).eval()


def _load_pytorch(path: Path) -> Loaded:
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or not {"model", "meta"} <= set(ckpt):
        raise MedclassError(f"{path}: not a medclass checkpoint (needs 'model' and 'meta')")
    meta = check_metadata(ckpt["meta"], str(path))
    model = build_model(meta)
    model.load_state_dict(ckpt["model"])
    return _torch_forward(model), meta


def _load_torchscript(path: Path) -> Loaded:
    extra = {TS_EXTRA_FILE: ""}
    with quiet_jit():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    module.eval()
    meta = json.loads(extra[TS_EXTRA_FILE]) if extra[TS_EXTRA_FILE] else None
    return _torch_forward(module), meta


def _load_onnx(path: Path) -> Loaded:
    ort = _runtime("onnxruntime", "onnx")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    raw = session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)

    def forward(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return forward, json.loads(raw) if raw else None


def _load_tflite(path: Path) -> Loaded:
    interpreter_mod = _runtime("ai_edge_litert.interpreter", "tflite")
    interp = interpreter_mod.Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    signature = inp.get("shape_signature", inp["shape"])
    static = int(signature[0]) if int(signature[0]) > 0 else None
    state = {"batch": int(inp["shape"][0])}

    def invoke(x: np.ndarray) -> np.ndarray:
        if len(x) != state["batch"]:  # dynamic batch dimension only
            interp.resize_tensor_input(inp["index"], list(x.shape), strict=True)
            interp.allocate_tensors()
            state["batch"] = len(x)
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out["index"]).copy()

    def forward(x: np.ndarray) -> np.ndarray:
        if static is None:
            return invoke(x)
        outs = []
        for i in range(0, len(x), static):  # static batch: run chunks, pad the last one
            chunk = x[i:i + static]
            pad = static - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            outs.append(invoke(np.ascontiguousarray(chunk))[:static - pad])
        return np.concatenate(outs)

    return forward, None


def _load_coreml(path: Path) -> Loaded:
    if sys.platform != "darwin":
        raise NotRunnable("needs macOS (Core ML models run only on Apple platforms)")
    ct = _runtime("coremltools", "coreml")
    model = ct.models.MLModel(str(path))
    raw = model.user_defined_metadata.get("medclass")

    def forward(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict({INPUT_NAME: x})[OUTPUT_NAME])

    return forward, json.loads(raw) if raw else None


TRT_NEEDS_GPU = ("TensorRT engines need an NVIDIA GPU with CUDA; run predict on one or use the "
                 ".onnx/.ts model")


def _trt_io(engine: Any, trt: Any, path: Path) -> tuple[str, str, torch.dtype, torch.dtype, int]:
    """(input name, output name, their torch dtypes, profile-0 max batch) of a one-in/one-out
    engine."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if n not in inputs]
    if len(inputs) != 1 or len(outputs) != 1:
        raise MedclassError(f"{path}: expected one input and one output tensor, found inputs "
                            f"{inputs} and outputs {outputs}; export with `dvc repro export`")
    dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
    kinds = [engine.get_tensor_dtype(n) for n in (inputs[0], outputs[0])]
    if any(k not in dtypes for k in kinds):
        raise MedclassError(f"{path}: engine input/output types {kinds} are not float32/float16")
    max_batch = int(engine.get_tensor_profile_shape(inputs[0], 0)[2][0])
    return inputs[0], outputs[0], dtypes[kinds[0]], dtypes[kinds[1]], max_batch


def _load_tensorrt(path: Path) -> Loaded:
    """Deserialize the engine; run batches on a dedicated CUDA stream (torch tensors as I/O)."""
    if not torch.cuda.is_available():  # before importing tensorrt: same reason without it
        raise NotRunnable(TRT_NEEDS_GPU)
    trt = _runtime("tensorrt", "tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    trt_runtime = trt.Runtime(logger)
    engine = trt_runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise MedclassError(f"{path}: TensorRT cannot load this engine (built for another GPU "
                            "or TensorRT version?); re-export on this machine")
    inp, out, in_dtype, out_dtype, max_batch = _trt_io(engine, trt, path)
    context = engine.create_execution_context()
    stream = torch.cuda.Stream()
    owners = (trt_runtime, engine)  # the context needs its engine (and runtime) alive

    def run(x: np.ndarray, _owners: tuple[Any, ...] = owners) -> np.ndarray:
        with torch.cuda.stream(stream):  # copies, allocations and the engine on one stream
            x_dev = torch.from_numpy(x).to("cuda").to(in_dtype).contiguous()
            if not context.set_input_shape(inp, tuple(x_dev.shape)):
                raise RuntimeError(f"TensorRT rejected input shape {tuple(x_dev.shape)}")
            y_dev = torch.empty(tuple(context.get_tensor_shape(out)), dtype=out_dtype,
                                device="cuda")
            context.set_tensor_address(inp, x_dev.data_ptr())
            context.set_tensor_address(out, y_dev.data_ptr())
            if not context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed (see the TensorRT log above)")
            y = y_dev.float().cpu()
        stream.synchronize()
        return y.numpy()

    def forward(x: np.ndarray) -> np.ndarray:
        return np.concatenate([run(x[i:i + max_batch]) for i in range(0, len(x), max_batch)])

    return forward, None


def _runtime(module: str, extra: str) -> Any:
    try:
        return require(module, extra)
    except ToolchainMissing as exc:
        raise NotRunnable(str(exc)) from exc


LOADERS: dict[str, Callable[[Path], Loaded]] = {
    "pytorch": _load_pytorch,
    "torchscript": _load_torchscript,
    "onnx": _load_onnx,
    "tflite": _load_tflite,
    "coreml": _load_coreml,
    "tensorrt": _load_tensorrt,
}


def load_runner(path: str | Path, kind: str | None = None) -> Runner:
    """Load ``path`` (kind from its suffix unless given) with its embedded or sidecar metadata.

    Raises ``NotRunnable`` when this machine lacks the runtime (Core ML off macOS, TensorRT
    without CUDA, a missing optional package) and ``MedclassError`` for unusable files.
    """
    p = Path(path)
    if not p.exists():
        raise MedclassError(f"model {p} not found")
    kind = kind or detect_kind(p)
    try:
        forward, meta = LOADERS[kind](p)
    except (NotRunnable, MedclassError):
        raise
    except Exception as exc:  # runtimes raise many types for corrupt or foreign files
        raise MedclassError(f"{p}: cannot load as {kind} ({one_line(exc)})") from exc
    meta = check_metadata(meta, str(p)) if meta is not None else sidecar_metadata(p)
    return Runner(p, kind, meta, forward)


def read_metadata(path: str | Path) -> tuple[str, dict[str, Any]]:
    """(format, metadata) of an artifact; falls back to the sidecar when it cannot run here."""
    p = Path(path)
    if not p.exists():
        raise MedclassError(f"model {p} not found")
    kind = detect_kind(p)
    if kind in SIDECAR_ONLY:  # no embedded metadata: no need to start the runtime
        return kind, sidecar_metadata(p)
    try:
        return kind, load_runner(p, kind).meta
    except NotRunnable:
        return kind, sidecar_metadata(p)
