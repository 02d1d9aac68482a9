"""split: duplicate- and group-aware stratified manifest, train-set mean/std, uint8 cache."""

from __future__ import annotations

import logging

from medclass.config import Params
from medclass.data.leakage import split_dataset
from medclass.data.raw_manifest import read_source
from medclass.io import atomic_dir, write_json
from medclass.stages._common import METRICS_DIR, RAW_DIR, SPLIT_DIR, repro_tag, run_stage


def main(params: Params) -> None:
    with atomic_dir(SPLIT_DIR) as tmp:
        stats, report = split_dataset(RAW_DIR, params, tmp)
        # the source type rides along for the model card (checkpoints record only the params
        # their stage declares, and data.* is not among them)
        write_json(tmp / "stats.json", {**stats, "source": read_source(RAW_DIR).get("source")})
    write_json(METRICS_DIR / "split_report.json", {**report, "repro": repro_tag(params)})
    logging.info("split counts: %s", stats["counts"])
    logging.info(
        "duplicates: %d exact groups (%d images), %d near groups (%d images); %d groups kept "
        "whole, %d cross-split leaks prevented",
        report["exact_duplicates"]["groups"], report["exact_duplicates"]["images"],
        report["near_duplicates"]["groups"], report["near_duplicates"]["images"],
        report["n_multi_image_groups"], (report["leaks_prevented"] or {}).get("groups", 0),
    )
    if report["group_pattern"]:
        gp = report["group_pattern"]
        logging.info("split.group_pattern %r: %d images matched (%d groups), %d unmatched (each "
                     "its own group)", gp["pattern"], gp["matched"], gp["groups"], gp["unmatched"])
    if report["predefined_split"] and report["cross_split_groups"]["groups"]:
        logging.warning(
            "the predefined split keeps %d duplicate/patient groups (%d images) across splits; "
            "not moved (set split.use_predefined: false to split them leak-free)",
            report["cross_split_groups"]["groups"], report["cross_split_groups"]["images"],
        )


if __name__ == "__main__":
    run_stage("split", main)
