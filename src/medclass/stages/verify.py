"""verify: every listed backbone builds, runs forward/backward with the right shapes."""

from __future__ import annotations

import logging

from medclass.config import Params
from medclass.errors import MedclassError
from medclass.io import read_json, write_json, write_text
from medclass.models import list_models
from medclass.models.checks import verify_model
from medclass.stages._common import METRICS_DIR, PLOTS_DIR, SPLIT_DIR, run_stage


def models_to_check(params: Params) -> list[str]:
    """``verify.models`` resolved to names; the selected ``model`` is always first."""
    setting = params.verify.models
    names = list_models() if setting == "all" else [] if setting == "selected" else list(setting)
    return [params.model, *[n for n in names if n != params.model]]


def markdown_table(rows: list[dict]) -> str:
    """A Markdown table of the verify results."""
    lines = ["| model | ok | params (M) | GFLOPs | CPU latency b1 (ms) | error |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {'yes' if r['ok'] else 'NO'} | {r.get('params_m', '')} | "
                     f"{r.get('gflops', '')} | {r.get('latency_ms_b1', '')} | "
                     f"{r.get('error', '')} |")
    return "\n".join(lines) + "\n"


def main(params: Params) -> None:
    stats = read_json(SPLIT_DIR / "stats.json")
    size = params.verify.image_size or params.data.image_size
    rows = []
    for name in models_to_check(params):
        kwargs = dict(params.train.model_kwargs) if name == params.model else {}
        row = verify_model(name, image_size=size, in_chans=int(stats["channels"]),
                           num_classes=len(stats["classes"]), batch_size=params.verify.batch_size,
                           latency_runs=params.verify.latency_runs, model_kwargs=kwargs)
        logging.info("%s: %s", name, "ok" if row["ok"] else row["error"])
        rows.append(row)
    failed = [r["model"] for r in rows if not r["ok"]]
    write_json(METRICS_DIR / "verify.json", {
        "image_size": size, "n_checked": len(rows), "n_failed": len(failed),
        "models": {r["model"]: {k: v for k, v in r.items() if k != "model"} for r in rows},
    })
    write_text(PLOTS_DIR / "verify.md", markdown_table(rows))
    if rows[0]["model"] in failed:
        raise MedclassError(
            f"model: {params.model!r} failed verify at {size} px ({rows[0]['error']}); "
            "pick another backbone or image size (see plots/verify.md)"
        )
    if failed:
        logging.warning("backbones failing verify (not selected): %s", ", ".join(failed))


if __name__ == "__main__":
    run_stage("verify", main)
