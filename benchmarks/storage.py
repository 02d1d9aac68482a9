"""Disk used by a user's dataset under DVC: ``data/`` + ``.dvc/cache`` against the source tree
plus the uint8 training cache (the target is at most 1.5x).

A generated ``train/ test/`` PNG tree (``ingest_scale.make_tree``; JPEG would only make the
source smaller) is copied into a git+DVC copy of this checkout at ``data/external/tree``,
``dvc add``-ed, and ``dvc repro split`` runs on it (``data.source: folder``). Sizes are summed
over unique inodes, so a hardlinked file counts once, as ``du`` counts it. The same run with
``cache.type: copy`` (DVC's behaviour without this repository's ``.dvc/config``) is the
comparison row.

Repeat (repo root, venv active):

    python benchmarks/storage.py --images 5000 --px 256
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from _machine import describe, write_results
from _workspace import REPO, copy_repo, make_env, timed
from ingest_scale import make_tree

OUT = REPO / "benchmarks" / "results" / "storage.json"
TREE = "data/external/tree"


def unique_bytes(*roots: Path) -> int:
    """Bytes of the files under ``roots``, each inode once."""
    seen: dict[int, int] = {}
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for f in files:
                st = os.lstat(os.path.join(dirpath, f))
                seen[st.st_ino] = st.st_size
    return sum(seen.values())


def measure(work: Path, tree: Path, link_type: str | None) -> dict[str, Any]:
    """One project: dvc add the tree, dvc repro split, sizes in MiB."""
    proj = work / f"proj-{link_type or 'repo'}"
    shutil.rmtree(proj, ignore_errors=True)
    copy_repo(proj)
    env = make_env(proj)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["data"].update(source="folder", path=TREE)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(tree, proj / TREE)
    timed(proj, env, "git", "init", "-q")
    if link_type is not None:
        timed(proj, env, "dvc", "config", "cache.type", link_type)
    add_s, _ = timed(proj, env, "dvc", "add", TREE)
    repro_s, _ = timed(proj, env, "dvc", "repro", "split")
    mib = 2.0**20
    source = unique_bytes(proj / TREE) / mib
    cache_npy = unique_bytes(proj / "data/split/cache") / mib
    stored = unique_bytes(proj / "data", proj / ".dvc/cache") / mib
    shutil.rmtree(proj, ignore_errors=True)
    return {"cache_type": link_type or "repo .dvc/config", "source_mib": round(source, 2),
            "split_cache_mib": round(cache_npy, 2), "stored_mib": round(stored, 2),
            "ratio": round(stored / (source + cache_npy), 3), "dvc_add_s": round(add_s, 1),
            "repro_split_s": round(repro_s, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--px", type=int, default=256)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "medclass-storage")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    tree = make_tree(args.work, args.images, args.px, classes=3, seed=0,
                     workers=os.cpu_count() or 1)
    rows = [measure(args.work, tree, None), measure(args.work, tree, "copy")]
    for row in rows:
        print(row)
    write_results(args.out, {"machine": describe(), "images": args.images, "image_px": args.px,
                             "image_size": yaml.safe_load((REPO / "params.yaml").read_text())
                             ["data"]["image_size"], "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
