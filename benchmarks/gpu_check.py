"""GPU acceptance check: training speed, the pipeline on CUDA, TensorRT and DDP in one command.

On a machine with an NVIDIA GPU (aimed at <= 8 minutes on one H100/H200), repo root, venv
active (``pip install -e '.[all,tensorrt]'`` for the TensorRT section)::

    PYTHONPATH=src python benchmarks/gpu_check.py            # --out PATH, --only train,ddp

Writes ``benchmarks/results/gpu_check.json`` (rewritten after every section): ``machine``
(``_machine.describe()`` plus torch/CUDA/cuDNN/TensorRT/driver versions) and one entry per
section with ``status`` (``ok``, ``skipped: reason`` or ``failed: first line of the error``)
and ``section_s``. Sections are independent: a failure is recorded and the next one runs.

* ``train``: ``gpu_train.run`` (our engine: bf16 autocast, channels_last, fused AdamW,
  augmentation on the GPU, NVML utilisation) on ``timm/resnet50`` at 224 px, eager and
  ``torch.compile``: rows of ``model, image_size, precision, compile, img_s, gpu_util_mean``.
* ``pipeline``: the default pipeline with tiny epochs (``PIPELINE_PARAMS``, ``train.device:
  cuda``) through real ``dvc repro`` in a temporary git+DVC copy of this checkout.
* ``tensorrt``: our exporter (``export_checkpoint``, formats onnx + tensorrt) on a random-init
  ``--trt-model`` at 224 px: parity of the fp32 and fp16 engines vs PyTorch and latency at batch
  1 and 32 next to ONNX Runtime (CPU; CUDA where onnxruntime-gpu is installed) and PyTorch eager
  on the GPU, all NumPy in and out.
* ``ddp``: DistributedDataParallel with nccl (``_ddp_probe.py``): ``medclass.launch`` with two
  processes on 2+ GPUs; on one GPU ``torch.distributed.run`` with one process (medclass runs a
  single process in place, without a process group).

Without CUDA every section is ``skipped: no CUDA device`` and the script exits 0 at once; with
CUDA it exits 1 when a section failed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # _machine & co., when not run as a script

from _machine import describe, write_results  # noqa: E402
from _workspace import REPO, copy_repo, make_env, stages_run  # noqa: E402
from repro_overhead import set_params  # noqa: E402

from medclass.errors import exception_line  # noqa: E402
from medclass.io import write_json  # noqa: E402

OUT = BENCH / "results" / "gpu_check.json"
NO_CUDA = "no CUDA device"
TRAIN_MODEL, TRAIN_SIZE, TRAIN_BATCH = "timm/resnet50", 224, 256
# (compile, batch, data on the GPU): the default path (train.data_on_device: auto holds the
# images on the GPU) eager and compiled, then the compiled step fed by the host loader.
TRAIN_ROWS = ((False, TRAIN_BATCH, True), (True, TRAIN_BATCH, True), (True, TRAIN_BATCH, False))
TRAIN_KEYS = ("model", "image_size", "precision", "compile", "data", "loader_workers", "img_s",
              "gpu_util_mean",
              "gpu_util_median", "batch_size", "steps", "max_memory_gib")
PIPELINE_PARAMS: dict[str, Any] = {
    "train": {"device": "cuda", "progress": False},
    "head": {"epochs": 1},
    "finetune": {"epochs": 1, "min_epochs": 1},
    "kfold": {"folds": 2, "epochs": 1, "head_epochs": 0},
    "evaluate": {"bootstrap": 100},
}
TIMEOUT_S = {"git": 60, "pipeline": 300, "ddp": 180}
TRT_SIZE, TRT_BATCH = 224, 32

Section = Callable[[argparse.Namespace], "dict[str, Any]"]


def run_cmd(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run ``cmd``; its stdout + stderr, or ``RuntimeError`` naming its last error line."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    output = proc.stdout + proc.stderr
    if proc.returncode:
        sys.stderr.write(f"{' '.join(cmd)} exited {proc.returncode}:\n{output[-3000:]}\n")
        name = " ".join([Path(cmd[0]).name, *cmd[1:4]])
        raise RuntimeError(f"{name} exited {proc.returncode}: {error_line(output)}")
    return output


def error_line(output: str) -> str:
    """The most telling line of a failed command: a stage's ``error [stage]: …``, else the
    first ``SomeError: message`` (the root cause in a traceback), else DVC's ``ERROR: …``."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for pattern in (r"^error \[", r"^[\w.]*(Error|Exception): \S", r"^ERROR: "):
        hits = [ln for ln in lines if re.search(pattern, ln)]
        if hits:
            return hits[0]
    return lines[-1] if lines else "no output"


def section_train(args: argparse.Namespace) -> dict[str, Any]:
    """gpu_train.py's measurement for each of ``TRAIN_ROWS``; a failing row does not stop the
    others."""
    import gpu_train

    rows, failed = [], []
    for compiled, batch, on_device in TRAIN_ROWS:
        try:
            result = gpu_train.run(TRAIN_MODEL, TRAIN_SIZE, batch, args.train_steps,
                                   compiled, "bf16", on_device=on_device)
            rows.append({k: result[k] for k in TRAIN_KEYS})
            print(f"[gpu_check] train {rows[-1]}", file=sys.stderr, flush=True)
        except Exception as exc:  # noqa: BLE001 (recorded; the other rows still run)
            traceback.print_exc()
            line = exception_line(exc, with_type=True, limit=300)
            rows.append({"model": TRAIN_MODEL, "compile": compiled, "batch_size": batch,
                         "status": f"failed: {line}"})
            failed.append(f"compile={compiled} batch={batch}: {line}")
        torch.compiler.reset()
        gc.collect()
        torch.cuda.empty_cache()
    return {"status": f"failed: {'; '.join(failed)}" if failed else "ok", "rows": rows}


def section_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """``dvc repro`` of the default pipeline (tiny epochs, CUDA) in a temporary copy."""
    with tempfile.TemporaryDirectory(prefix="medclass-gpu-check-") as tmp:
        ws = Path(tmp)
        env = make_env(ws)
        copy_repo(ws)
        set_params(ws, PIPELINE_PARAMS)
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
            run_cmd(cmd, ws, env, TIMEOUT_S["git"])
        t0 = time.perf_counter()
        output = run_cmd([sys.executable, "-m", "dvc", "repro"], ws, env, TIMEOUT_S["pipeline"])
        wall = time.perf_counter() - t0
        export = json.loads((ws / "metrics" / "export.json").read_text(encoding="utf-8"))
        test = json.loads((ws / "metrics" / "test.json").read_text(encoding="utf-8"))
    return {"status": "ok", "wall_s": round(wall, 1), "stages_run": stages_run(output),
            "params_override": PIPELINE_PARAMS, "test_accuracy": test.get("accuracy"),
            "export": {name: e["status"] for name, e in export["formats"].items()}}


def _trt_checkpoint(model_name: str, size: int) -> dict[str, Any]:
    """A random-init checkpoint with realistic scales: zero-initialised norm gammas set to 1
    (``inference._unzero_norms``) and BatchNorm statistics averaged over random batches."""
    from inference import _unzero_norms

    from medclass.models import create_model

    torch.manual_seed(0)
    net = create_model(model_name, num_classes=4, in_chans=3, image_size=size)
    _unzero_norms(net)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
    net.train()
    with torch.no_grad():
        for _ in range(4):
            net(torch.randn(16, 3, size, size))
    meta = {"model": model_name, "model_kwargs": {}, "drop_rate": 0.0,
            "classes": ["a", "b", "c", "d"], "image_size": size, "channels": 3,
            "mean": [0.5] * 3, "std": [0.25] * 3, "params": {"model": model_name}, "epoch": 0}
    return {"model": net.eval().state_dict(), "meta": meta}


def _extra_latency(export_dir: Path, ckpt: dict[str, Any], runs: int) -> list[dict[str, Any]]:
    """ONNX Runtime's CUDA provider (where installed) and PyTorch eager on the GPU."""
    from medclass.export.parity import median_latency_ms, tile_batch
    from medclass.train.context import model_from_checkpoint

    x = np.random.default_rng(0).standard_normal((TRT_BATCH, 3, TRT_SIZE, TRT_SIZE),
                                                 dtype=np.float32)
    model = model_from_checkpoint(ckpt).eval().cuda()

    def eager(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch).cuda()).float().cpu().numpy()

    fns: dict[str, Callable[[np.ndarray], Any] | str] = {"pytorch eager (cuda)": eager}
    import onnxruntime as ort

    onnx_path = export_dir / "model.onnx"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        fns["onnxruntime CUDAExecutionProvider"] = "skipped: not available (onnxruntime-gpu)"
    elif onnx_path.is_file():
        session = ort.InferenceSession(str(onnx_path), providers=["CUDAExecutionProvider"])
        name = session.get_inputs()[0].name
        fns["onnxruntime CUDAExecutionProvider"] = (
            (lambda b: session.run(None, {name: b})[0])
            if session.get_providers()[0] == "CUDAExecutionProvider"
            else f"skipped: the CUDA provider did not load (ran {session.get_providers()})")
    rows = []
    for runtime, fn in fns.items():
        if isinstance(fn, str):
            rows.append({"runtime": runtime, "status": fn})
            continue
        rows.append({"runtime": runtime, "latency_ms_b1": median_latency_ms(fn, x[:1], runs),
                     "latency_ms_b32": median_latency_ms(fn, tile_batch(x, TRT_BATCH), runs)})
    return rows


def section_tensorrt(args: argparse.Namespace) -> dict[str, Any]:
    """Our exporter's fp32/fp16 engines: parity and latency next to the other runtimes."""
    from medclass.config import ExportParams
    from medclass.export.formats import ToolchainMissing
    from medclass.export.formats.tensorrt_format import require_tensorrt
    from medclass.export.pipeline import export_checkpoint

    try:
        require_tensorrt()
    except ToolchainMissing as exc:
        return {"status": f"skipped: {exc}"}
    ckpt = _trt_checkpoint(args.trt_model, TRT_SIZE)
    images = np.random.default_rng(0).integers(0, 256, (TRT_BATCH, 3, TRT_SIZE, TRT_SIZE),
                                               dtype=np.uint8)
    params = ExportParams(formats=["onnx", "tensorrt"], parity_batch=TRT_BATCH, latency_runs=20)
    with tempfile.TemporaryDirectory(prefix="medclass-trt-") as tmp:
        report = export_checkpoint(ckpt, images, params, Path(tmp) / "export")
        formats = report["formats"]
        extra = _extra_latency(Path(tmp) / "export", ckpt, params.latency_runs)
    trt, onnx = formats["tensorrt"], formats["onnx"]
    keys = ("max_abs_diff", "top1_agreement", "latency_ms_b1", "latency_ms_b32")
    engines = {"fp32": {k: trt.get(k) for k in keys}, "fp16": trt.get("fp16")}
    latency = [{"runtime": "tensorrt fp32 (cuda)", **{k: trt.get(k) for k in keys[2:]}},
               {"runtime": "tensorrt fp16 (cuda)",
                **{k: (trt.get("fp16") or {}).get(k) for k in keys[2:]}},
               {"runtime": "onnxruntime CPUExecutionProvider",
                **{k: onnx.get(k) for k in keys[2:]}}, *extra]
    return {"status": trt["status"], "model": args.trt_model, "image_size": TRT_SIZE,
            "tensorrt": trt.get("tensorrt"), **engines, "latency": latency,
            "onnx_status": onnx["status"]}


def section_ddp(args: argparse.Namespace) -> dict[str, Any]:
    """nccl DDP steps through the launcher (2 GPUs) or torchrun (1 GPU); replicas must agree."""
    nproc = min(2, torch.cuda.device_count())
    if nproc >= 2:
        launcher = ["-m", "medclass.launch", "--nproc-per-node", str(nproc), "_ddp_probe"]
    else:
        launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
                    "-m", "_ddp_probe"]
    with tempfile.TemporaryDirectory(prefix="medclass-ddp-") as tmp:
        out = Path(tmp) / "ddp.json"
        path = os.pathsep.join(p for p in (str(BENCH), str(REPO / "src"),
                                           os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONPATH": path, "MEDCLASS_DDP_PROBE_OUT": str(out)}
        run_cmd([sys.executable, *launcher], REPO, env, TIMEOUT_S["ddp"])
        result = json.loads(out.read_text(encoding="utf-8"))
    problems = [p for p, bad in (
        (f"backend {result['backend']}, not nccl", result["backend"] != "nccl"),
        ("replicas differ after the steps", not result["replicas_equal"]),
        (f"all_reduce gave {result['all_reduce_sum']}",
         result["all_reduce_sum"] != result["world_size"])) if bad]
    return {"status": f"failed: {'; '.join(problems)}" if problems else "ok",
            "launcher": " ".join(launcher[:2]), "processes": nproc, **result}


SECTIONS: dict[str, Section] = {"train": section_train, "pipeline": section_pipeline,
                                "tensorrt": section_tensorrt, "ddp": section_ddp}


def run_sections(sections: dict[str, Section], args: argparse.Namespace, cuda: bool,
                 done: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Each section's result (``skipped: no CUDA device`` without CUDA); exceptions are caught
    per section as ``failed: <first line>``. ``done(results)`` runs after every section."""
    results: dict[str, Any] = {}
    for name, fn in sections.items():
        if not cuda:
            results[name] = {"status": f"skipped: {NO_CUDA}"}
            continue
        t0 = time.perf_counter()
        print(f"[gpu_check] {name} ...", file=sys.stderr, flush=True)
        try:
            result = fn(args)
        except Exception as exc:  # noqa: BLE001 (one section's failure is its result)
            traceback.print_exc()
            result = {"status": f"failed: {exception_line(exc, with_type=True, limit=300)}"}
        results[name] = {"status": result.pop("status", "ok"), **result,
                         "section_s": round(time.perf_counter() - t0, 1)}
        print(f"[gpu_check] {name}: {results[name]['status']}", file=sys.stderr, flush=True)
        gc.collect()
        torch.cuda.empty_cache()
        if done is not None:
            done(results)
    return results


def _package_version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 (absent or not importable here: no version)
        return None


def machine() -> dict[str, Any]:
    """``describe()`` plus the GPU software stack."""
    info = describe()
    cuda = torch.cuda.is_available()
    driver = None
    if cuda:
        try:
            import pynvml

            pynvml.nvmlInit()
            driver = pynvml.nvmlSystemGetDriverVersion()
        except Exception:  # noqa: BLE001 (NVML absent: no driver version)
            driver = None
    info.update({"cuda_device_count": torch.cuda.device_count() if cuda else 0,
                 "torch": torch.__version__, "cuda": torch.version.cuda,
                 "cudnn": torch.backends.cudnn.version() if cuda else None,
                 "nvidia_driver": driver, "tensorrt": _package_version("tensorrt")})
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the selected sections and write the JSON; returns what was written."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections (default: all of {', '.join(SECTIONS)})")
    ap.add_argument("--train-steps", type=int, default=30, help="timed steps per train row")
    ap.add_argument("--trt-model", default="timm/resnet18", help="backbone of the TensorRT check")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    cuda = torch.cuda.is_available()
    partial = {"machine": None}

    def checkpoint(results: dict[str, Any]) -> None:
        write_json(args.out, {**partial, **results})

    results = run_sections({n: SECTIONS[n] for n in names}, args, cuda, checkpoint)
    payload = {"machine": machine(), **results}
    write_results(args.out, payload)
    return payload


if __name__ == "__main__":
    written = main()
    failed = [k for k, v in written.items() if k != "machine" and v["status"].startswith("failed")]
    raise SystemExit(1 if failed else 0)
