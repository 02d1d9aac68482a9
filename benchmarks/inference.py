"""CPU inference latency: PyTorch eager vs ONNX Runtime vs LiteRT, per backbone.

For every model (random init, seeded, eval mode; all-zero norm weights set to 1, see
``_unzero_norms``) the project's own exporters write the ``pytorch``, ``onnx`` and ``tflite``
artifacts to a temp dir (with the registered converter fixes and ``UNSUPPORTED`` gaps of
``medclass.export.formats.fixes``), and the project's runtime wrappers
(``medclass.export.runtime.load_runner``) load and run them. Per (model, runtime): median
batch-1 and batch-32 latency over ``--runs`` timed calls after 3 warm-up calls
(``medclass.export.parity.median_latency_ms``), batch-32 images/s, and max |logit diff| vs the
eager PyTorch model on the same random batch of 32, so a fast-but-wrong runtime is visible.
A runtime that cannot run a model gets ``status: skipped`` with the reason.

``batch_mode`` says how batch 32 ran: ``native`` (one call with a batch of 32) or, for a LiteRT
model converted at a static batch, the runner's loop over chunks of that size.

Repeat (from the repo root, venv active; takes minutes on 2 cores):

    python benchmarks/inference.py
    python benchmarks/inference.py --models simple_cnn convnext --image-size 64 --runs 20

Writes benchmarks/results/inference.json (``--out`` to change) and prints a markdown table.
Timings are wall-clock on a possibly shared machine: see ``machine.loadavg_1_5_15``. PyTorch
uses ``--threads`` (default: all logical cores) OpenMP threads, which suffer most when other
processes hold cores; ``--threads 1`` shows that effect.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _machine, when not run as a script

from _machine import describe, write_results  # noqa: E402

from medclass.config import ExportParams  # noqa: E402
from medclass.export.formats import FORMATS, ExportContext, ToolchainMissing, one_line  # noqa: E402
from medclass.export.formats.fixes import UNSUPPORTED, applied  # noqa: E402
from medclass.export.metadata import METADATA_FILE, build_metadata  # noqa: E402
from medclass.export.parity import compare, median_latency_ms  # noqa: E402
from medclass.export.pipeline import LATENCY_BATCH, deployable  # noqa: E402
from medclass.export.runtime import NotRunnable, load_runner  # noqa: E402
from medclass.io import write_json  # noqa: E402
from medclass.models import create_model  # noqa: E402

DEFAULT_MODELS = ["simple_cnn", "small_resnet", "convnext", "timm/resnet18"]
RUNTIMES = {"pytorch": "pytorch", "onnxruntime": "onnx", "litert": "tflite"}  # runtime: format
OUT = Path(__file__).resolve().parent / "results" / "inference.json"


def _tflite_batch_mode(path: Path) -> str:
    """How the project's LiteRT runner runs a batch of 32 for this flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    inp = Interpreter(model_path=str(path)).get_input_details()[0]
    static = int(inp.get("shape_signature", inp["shape"])[0])
    if static <= 0:
        return "native"
    return f"loop: {-(-LATENCY_BATCH // static)} calls of batch {static}"


def _unzero_norms(model: torch.nn.Module) -> int:
    """Set all-zero 1-D ``*.weight`` tensors (zero-initialised norm gammas) to 1; return count.

    timm zero-initialises the last norm of each residual block (``zero_init_last``): at random
    init those branches output exactly 0 and LiteRT's converter folds them away, timing a
    much smaller graph than the other runtimes. Trained weights are never all zero.
    """
    filled = 0
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.dim() == 1 and pname.endswith("weight") and not p.any():
                p.fill_(1.0)
                filled += 1
    return filled


def _row(model: str, runtime: str, status: str = "ok", reason: str | None = None,
         **fields: Any) -> dict[str, Any]:
    row = {"model": model, "runtime": runtime, "status": status, "reason": reason,
           "batch1_ms": None, "batch32_ms": None, "batch32_img_s": None,
           "max_abs_diff": None, "batch_mode": None}
    return {**row, **fields}


def bench_runtime(name: str, runtime: str, ctx: ExportContext, reference: np.ndarray,
                  runs: int) -> dict[str, Any]:
    """Export ``ctx.model`` to the runtime's format, check parity, time batch 1 and 32."""
    fmt = RUNTIMES[runtime]
    gap = UNSUPPORTED.get((fmt, name))
    if gap:
        return _row(name, runtime, "skipped", f"unsupported for {name}: {gap}")
    dest = ctx.out_dir / FORMATS[fmt].filename
    try:
        with applied(fmt, name, ctx.model, ctx.example):
            info = FORMATS[fmt].export(ctx, dest) or {}
    except ToolchainMissing as exc:
        return _row(name, runtime, "skipped", str(exc))
    except Exception as exc:  # noqa: BLE001 (a converter error skips this runtime only)
        return _row(name, runtime, "skipped", f"conversion failed: {one_line(exc)}")
    try:
        runner = load_runner(dest, fmt)
        x = ctx.example.numpy()
        diff = max(compare(reference, runner(x))["max_abs_diff"],
                   compare(reference[:1], runner(x[:1]))["max_abs_diff"])
    except NotRunnable as exc:
        return _row(name, runtime, "skipped", f"cannot run here: {exc}")
    except Exception as exc:  # noqa: BLE001
        return _row(name, runtime, "skipped", f"runtime failed: {one_line(exc)}")
    b1 = median_latency_ms(runner, x[:1], runs)
    b32 = median_latency_ms(runner, x, runs)
    mode = _tflite_batch_mode(dest) if fmt == "tflite" else "native"
    return _row(name, runtime, batch1_ms=b1, batch32_ms=b32,
                batch32_img_s=round(LATENCY_BATCH / b32 * 1000.0, 1), max_abs_diff=diff,
                batch_mode=mode, export_info=info, artifact_bytes=dest.stat().st_size)


def bench_model(name: str, size: int, channels: int, runs: int, seed: int,
                runtimes: list[str]) -> list[dict[str, Any]]:
    """Every runtime's row for one backbone (random init, seeded)."""
    torch.manual_seed(seed)
    try:
        model = create_model(name, num_classes=2, in_chans=channels, image_size=size).eval()
    except Exception as exc:  # noqa: BLE001 (e.g. a size the backbone does not accept)
        return [_row(name, r, "skipped", f"model build failed: {one_line(exc)}")
                for r in runtimes]
    unzeroed = _unzero_norms(model)
    deploy, fused = deployable(model)
    meta = build_metadata({"model": name, "classes": ["class_0", "class_1"],
                           "image_size": size, "channels": channels,
                           "mean": [0.5] * channels, "std": [0.25] * channels},
                          reparameterized=fused)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(LATENCY_BATCH, channels, size, size, generator=gen)
    with torch.no_grad():
        reference = model(x).float().numpy()
    params = ExportParams(formats=[RUNTIMES[r] for r in runtimes], latency_runs=runs)
    with tempfile.TemporaryDirectory(prefix="medclass-bench-") as tmp:
        out_dir = Path(tmp)
        write_json(out_dir / METADATA_FILE, meta)  # the LiteRT runner reads this sidecar
        ctx = ExportContext(deploy, x, meta, params, out_dir)
        rows = []
        for runtime in runtimes:
            row = {**bench_runtime(name, runtime, ctx, reference, runs),
                   "zero_norm_weights_set_to_1": unzeroed}
            print(f"  {runtime:12s} {row['status']:8s} "
                  f"{row['batch1_ms'] or row['reason'] or ''}", file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table (skipped rows show their reason)."""
    lines = ["| model | runtime | batch 1 ms | batch 32 ms | img/s @32 | max abs diff | "
             "batch 32 mode |", "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['runtime']} | skipped: {r['reason']} "
                         "| | | | |")
            continue
        lines.append(f"| {r['model']} | {r['runtime']} | {_fmt(r['batch1_ms'], '.2f')} | "
                     f"{_fmt(r['batch32_ms'], '.2f')} | {_fmt(r['batch32_img_s'], '.0f')} | "
                     f"{_fmt(r['max_abs_diff'], '.1e')} | {r['batch_mode']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--runtimes", nargs="+", choices=list(RUNTIMES), default=list(RUNTIMES))
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--channels", type=int, choices=(1, 3), default=1)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    for name in args.models:
        print(f"{name} @ {args.image_size}px x{args.channels}", file=sys.stderr, flush=True)
        rows += bench_model(name, args.image_size, args.channels, args.runs, args.seed,
                            args.runtimes)
    payload = {"machine": describe(), "image_size": args.image_size,
               "channels": args.channels, "runs": args.runs, "warmup": 3,
               "batch": LATENCY_BATCH, "rows": rows,
               "note": "ONNX Runtime and LiteRT run with the project runners' default thread "
                       "settings; PyTorch with torch.set_num_threads(--threads, default: "
                       "os.cpu_count())."}
    print(markdown(rows))
    write_results(args.out, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
