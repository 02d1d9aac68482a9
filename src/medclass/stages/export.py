"""export: models/model.pt → models/export/ (every selected format) + metrics/export.json.

The exporter's report carries latencies and conversion times; they go to the untracked
``logs/export_timings.json`` (``stages._timings``), the rest to ``metrics/export.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medclass.config import Params
from medclass.data.bundle import load_data
from medclass.export.pipeline import export_checkpoint, write_report
from medclass.io import load_checkpoint, read_json
from medclass.stages._common import METRICS_DIR, MODELS_DIR, SPLIT_DIR, repro_tag, run_stage
from medclass.stages._timings import split_timings, write_timings

CHECKPOINT = MODELS_DIR / "model.pt"
CALIBRATION = MODELS_DIR / "calibration.json"  # temperature fitted by the evaluate stage
TEST_METRICS = METRICS_DIR / "test.json"
OUT = MODELS_DIR / "export"


def _optional_json(path: Path) -> dict[str, Any] | None:
    return read_json(path) if path.is_file() else None


def main(params: Params) -> None:
    ckpt = load_checkpoint(CHECKPOINT)
    test = load_data(SPLIT_DIR, ("test",)).splits["test"]
    report = export_checkpoint(
        ckpt, test.images[: params.export.parity_batch], params.export, OUT,
        checkpoint=CHECKPOINT, test_metrics=_optional_json(TEST_METRICS),
        calibration=_optional_json(CALIBRATION),
    )
    tracked, timings = split_timings(report)
    write_timings("export", {"model": report["model"],
                             "latency_runs": params.export.latency_runs, **timings})
    write_report(METRICS_DIR / "export.json", {**tracked, "repro": repro_tag(params)})


if __name__ == "__main__":
    run_stage("export", main)
