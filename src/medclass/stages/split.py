"""split: stratified manifest, train-set mean/std and the decode-once uint8 cache."""

from __future__ import annotations

import logging

from medclass.config import Params
from medclass.data.cache import build_cache
from medclass.data.split import build_manifest, write_manifest
from medclass.io import atomic_dir, read_json, write_json
from medclass.stages._common import RAW_DIR, SPLIT_DIR, run_stage


def main(params: Params) -> None:
    classes = read_json(RAW_DIR / "classes.json")["classes"]
    rows = build_manifest(RAW_DIR, params.split, params.seed)
    with atomic_dir(SPLIT_DIR) as tmp:
        write_manifest(tmp / "manifest.csv", rows)
        stats = build_cache(RAW_DIR, rows, params.data.image_size, params.data.channels,
                            classes, tmp / "cache")
        write_json(tmp / "stats.json", stats)
    logging.info("split counts: %s", stats["counts"])


if __name__ == "__main__":
    run_stage("split", main)
