"""prepare: validate ``data.source`` into data/raw/manifest.csv (no image copies); report
layout, per-split counts and exclusions."""

from __future__ import annotations

import logging

from medclass.config import Params
from medclass.data.sources import IngestError, prepare_raw
from medclass.io import write_json
from medclass.stages._common import METRICS_DIR, RAW_DIR, repro_tag, run_stage


def main(params: Params) -> None:
    try:
        report = prepare_raw(params.data, params.seed, RAW_DIR)
    except IngestError as exc:  # still say which files were excluded and why
        write_json(METRICS_DIR / "data_report.json", {**exc.report, "repro": repro_tag(params)})
        raise
    write_json(METRICS_DIR / "data_report.json", {**report, "repro": repro_tag(params)})
    logging.info("%d images in %d classes, %d excluded", report["n_images"],
                 report["n_classes"], report["n_excluded"])


if __name__ == "__main__":
    run_stage("prepare", main)
