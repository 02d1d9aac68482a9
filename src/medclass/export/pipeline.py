"""Export a checkpoint to the selected formats, check each against PyTorch, report the results.

Per format the report holds ``status`` (``ok`` / ``built: reason`` / ``skipped: reason`` /
``failed: error``, see ``medclass.export.status``), ``file``, ``size_bytes``, ``precision``,
``max_abs_diff`` and ``top1_agreement`` of the logits vs the PyTorch checkpoint on the parity
batch (the full batch and a batch of one), and the median latency at batch 1 and 32
(``latency_ms_b1``/``latency_ms_b32``) where it can run, and the conversion time ``export_s``.
The export stage writes the wall-clock fields (latencies, ``export_s``) to the untracked
``logs/export_timings.json`` and the rest to ``metrics/export.json``.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
from torch import nn

from medclass.config import ExportFormat, ExportParams
from medclass.errors import MedclassError
from medclass.export import status
from medclass.export.formats import FORMATS, ExportContext, Exporter, ToolchainMissing, one_line
from medclass.export.formats.fixes import FIXES, UNSUPPORTED, applied
from medclass.export.metadata import METADATA_FILE, STATUS_KEY, build_metadata
from medclass.export.parity import compare, median_latency_ms, parity_failure, tile_batch
from medclass.export.runtime import NotRunnable, load_runner, normalise
from medclass.io import atomic_dir, write_json

log = logging.getLogger(__name__)
LATENCY_BATCH = 32
NOT_RUN: dict[str, Any] = {"max_abs_diff": None, "top1_agreement": None,
                           "latency_ms_b1": None, "latency_ms_b32": None}


class ParityError(Exception):
    """An artifact ran but its outputs differ from PyTorch beyond the tolerance."""


def selected_formats(setting: str | list[str]) -> list[str]:
    """Formats to export, in ``config.ExportFormat`` order."""
    wanted = set(FORMATS) if setting == "all" else set(setting)
    return [name for name in get_args(ExportFormat) if name in wanted]


def deployable(model: nn.Module) -> tuple[nn.Module, bool]:
    """An eval-mode copy for export, re-parameterised when the model supports it (MobileOne)."""
    fused = copy.deepcopy(model).eval()
    if callable(getattr(fused, "reparameterize", None)):
        fused.reparameterize()
        return fused, True
    return fused, False


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0


def _remove_all(dest: Path, exporter: Exporter) -> None:
    """Delete a failed format's artifact and the extra files its exporter writes."""
    for path in (dest, *(dest.with_name(name) for name in exporter.extra_files)):
        _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def _run_artifact(path: Path, kind: str, ctx: ExportContext, reference: np.ndarray,
                  precision: str) -> dict[str, Any]:
    """Parity (full batch and batch 1) and latency of the written artifact.

    Raises ``NotRunnable`` when it cannot run here and ``ParityError`` beyond the tolerance.
    """
    runner = load_runner(path, kind)
    x = ctx.example.numpy()
    full = compare(reference, runner(x))
    single = compare(reference[:1], runner(x[:1]))
    result: dict[str, Any] = {
        "max_abs_diff": max(full["max_abs_diff"], single["max_abs_diff"]),
        "top1_agreement": full["top1_agreement"],
    }
    fp16 = precision == "fp16"
    tolerance = ctx.params.fp16_tolerance if fp16 else ctx.params.tolerance
    failure = parity_failure(result, tolerance, strict_top1=not fp16)
    if failure:
        raise ParityError(failure)
    runs = ctx.params.latency_runs
    result["latency_ms_b1"] = median_latency_ms(runner, x[:1], runs)
    result["latency_ms_b32"] = median_latency_ms(runner, tile_batch(x, LATENCY_BATCH), runs)
    result["latency_device"] = "cuda" if kind == "tensorrt" else "cpu"
    return result


def _build(exporter: Exporter, ctx: ExportContext, dest: Path, entry: dict[str, Any]) -> None:
    """Convert (with the model's registered fix) and inspect; adds the fields to ``entry``."""
    model_name = ctx.meta["model"]
    fix = FIXES.get((exporter.name, model_name))
    if fix is not None:
        entry["converter_fix"] = fix.__name__
    t0 = time.perf_counter()
    with applied(exporter.name, model_name, ctx.model, ctx.example):
        entry.update(exporter.export(ctx, dest) or {})
    entry["export_s"] = round(time.perf_counter() - t0, 2)
    entry["size_bytes"] = _size(dest)
    if exporter.inspect is not None:
        entry.update(exporter.inspect(dest, ctx))


def run_format(exporter: Exporter, ctx: ExportContext, reference: np.ndarray, *,
               requested: bool = False) -> dict[str, Any]:
    """Export one format and check it; never raises for a format problem (see the status).

    ``requested``: the user named the format, so a missing toolchain fails it (not a skip).
    """
    model_name = ctx.meta["model"]
    reason = UNSUPPORTED.get((exporter.name, model_name))
    if reason:
        return {"status": status.unavailable(f"{status.UNSUPPORTED}{model_name}: {reason}",
                                             requested)}
    dest = ctx.out_dir / exporter.filename
    entry: dict[str, Any] = {"file": exporter.filename, "precision": "fp32"}
    try:
        _build(exporter, ctx, dest, entry)
        entry.update(_run_artifact(dest, exporter.name, ctx, reference, entry["precision"]))
    except NotRunnable as exc:  # converted and checked, but no runtime for it here
        return {"status": status.with_reason(status.BUILT, str(exc)), **entry, **NOT_RUN}
    except ToolchainMissing as exc:
        _remove_all(dest, exporter)
        return {"status": status.unavailable(str(exc), requested)}
    except Exception as exc:  # any converter/runtime error fails this format, not the others
        _remove_all(dest, exporter)
        log.debug("%s export failed", exporter.name, exc_info=True)
        error = str(exc) if isinstance(exc, ParityError) else one_line(exc)
        return {**entry, "status": status.with_reason(status.FAILED, error)}
    return {"status": status.OK, **entry}


def preflight(names: list[str], params: ExportParams) -> None:
    """Check the selected formats' options (e.g. ``export.onnxslim``) before exporting any."""
    for name in names:
        check = FORMATS[name].preflight
        if check is not None:
            check(params)


def export_checkpoint(
    ckpt: dict[str, Any],
    images: np.ndarray,
    params: ExportParams,
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    test_metrics: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export ``ckpt`` (``{"model", "meta"}``) into ``out_dir`` (replaced atomically).

    ``images`` are uint8 NCHW test images for the parity batch; ``test_metrics`` and
    ``calibration`` (temperature) go into the metadata. Returns the report, timings included
    (the stage splits them off ``metrics/export.json``).
    """
    from medclass.models.rebuild import model_from_checkpoint

    names = selected_formats(params.formats)
    preflight(names, params)
    if len(images) == 0:
        raise MedclassError("no test images for the parity check; the test split is empty")
    model = model_from_checkpoint(ckpt).eval()
    deploy, fused = deployable(model)
    meta = build_metadata(ckpt["meta"], checkpoint=checkpoint, test_metrics=test_metrics,
                          calibration=calibration, reparameterized=fused)
    x = torch.from_numpy(normalise(images[: params.parity_batch], meta))
    with torch.no_grad():
        reference = model(x).float().numpy()
    results: dict[str, Any] = {}
    with atomic_dir(out_dir) as tmp:
        write_json(tmp / METADATA_FILE, meta)
        ctx = ExportContext(deploy, x, meta, params, tmp)
        for name in names:
            results[name] = run_format(FORMATS[name], ctx, reference,
                                       requested=params.formats != "all")
            log.info("%-12s %s", name, _summary(results[name]))
        statuses = {name: entry["status"] for name, entry in results.items()}
        write_json(tmp / METADATA_FILE, {**meta, STATUS_KEY: statuses})  # for `medclass info`
    return {"model": meta["model"], "reparameterized": fused, "parity_images": len(x),
            "temperature": meta["temperature"], "tolerance": params.tolerance,
            "formats": results}


def _summary(entry: dict[str, Any]) -> str:
    if entry["status"] != status.OK:
        return entry["status"]
    return (f"ok  max|diff| {entry['max_abs_diff']:.2e}  top-1 {entry['top1_agreement']:.3f}  "
            f"{entry['latency_ms_b1']:.2f} ms @1  {entry['latency_ms_b32']:.2f} ms @32")


def write_report(path: str | Path, report: dict[str, Any]) -> None:
    """Write the report JSON; raise one-line ``MedclassError`` if any format failed.

    Failed includes a format named in ``export.formats`` that could not be exported here.
    """
    write_json(path, report)
    line = status.failure_line(report, path)
    if line:
        raise MedclassError(line)
