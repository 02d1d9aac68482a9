"""verify: every listed backbone builds, runs forward/backward with the right shapes.

``metrics/verify.json`` is a small summary to compare across experiments and
``plots/verify.md`` the per-backbone table; both hold only deterministic figures. The CPU
latencies go to the untracked ``logs/verify_timings.json`` (``stages._timings``).
"""

from __future__ import annotations

import logging
from typing import Any

from medclass.config import Params
from medclass.errors import MedclassError
from medclass.io import read_json, write_json, write_text
from medclass.models import list_models
from medclass.models.checks import verify_model
from medclass.stages._common import METRICS_DIR, PLOTS_DIR, SPLIT_DIR, repro_tag, run_stage
from medclass.stages._timings import split_timings, timings_path, write_timings

SUMMARY_KEYS = ("model", "ok", "params_m", "gflops", "error")  # the selected model's entry


def models_to_check(params: Params) -> list[str]:
    """``verify.models`` resolved to names; the selected ``model`` is always first."""
    setting = params.verify.models
    names = list_models() if setting == "all" else [] if setting == "selected" else list(setting)
    return [params.model, *[n for n in names if n != params.model]]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the verify results (no timings: the file is tracked)."""
    lines = ["| model | ok | params (M) | GFLOPs | error |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {'yes' if r['ok'] else 'NO'} | {r.get('params_m', '')} | "
                     f"{r.get('gflops', '')} | {r.get('error', '')} |")
    note = f"CPU latencies of the last local run (not tracked): `{timings_path('verify')}`."
    return "\n".join([*lines, "", note]) + "\n"


def summary(rows: list[dict[str, Any]], image_size: int) -> dict[str, Any]:
    """``metrics/verify.json``: counts, failing names and the selected model (first row)."""
    failed = [r["model"] for r in rows if not r["ok"]]
    return {"image_size": image_size, "checked": len(rows), "passed": len(rows) - len(failed),
            "failed": failed, "selected": {k: rows[0][k] for k in SUMMARY_KEYS if k in rows[0]}}


def check_all(params: Params, size: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Verify every backbone; the rows without timings, and the timings by model name."""
    stats = read_json(SPLIT_DIR / "stats.json")
    rows, timings = [], {}
    for name in models_to_check(params):
        kwargs = dict(params.train.model_kwargs) if name == params.model else {}
        row, timed = split_timings(verify_model(
            name, image_size=size, in_chans=int(stats["channels"]),
            num_classes=len(stats["classes"]), batch_size=params.verify.batch_size,
            latency_runs=params.verify.latency_runs, model_kwargs=kwargs))
        logging.info("%s: %s %s", name, "ok" if row["ok"] else row["error"],
                     " ".join(f"{k}={v}" for k, v in timed.items()))
        rows.append(row)
        timings[name] = timed
    return rows, timings


def main(params: Params) -> None:
    size = params.verify.image_size or params.data.image_size
    rows, timings = check_all(params, size)
    write_timings("verify", {"image_size": size, "latency_runs": params.verify.latency_runs,
                             "device": "cpu", "models": timings})
    result = summary(rows, size)
    write_json(METRICS_DIR / "verify.json", {**result, "repro": repro_tag(params)})
    write_text(PLOTS_DIR / "verify.md", markdown_table(rows))
    if not rows[0]["ok"]:
        raise MedclassError(
            f"model: {params.model!r} failed verify at {size} px ({rows[0]['error']}); "
            "pick another backbone or image size (see plots/verify.md)"
        )
    if result["failed"]:
        logging.warning("backbones failing verify (not selected): %s", ", ".join(result["failed"]))


if __name__ == "__main__":
    run_stage("verify", main)
