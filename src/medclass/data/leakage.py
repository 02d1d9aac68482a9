"""The split stage's work: one decode per image, duplicate/group detection, a leak-free split.

Every raw image is decoded once (``cache.decode_images``); the same decode resizes it for the
cache and fingerprints it (``dedup.fingerprint``). Exact and near duplicates, plus images that
share a ``split.group_by`` value, form groups that the split keeps whole. Outputs in
``out_dir``: ``manifest.csv``, ``groups.csv`` (``path,group`` for every image; kfold reads
it), ``duplicates.json`` (every duplicate group with its images, kind and splits) and the cache;
the returned report (counts only) becomes ``metrics/split_report.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medclass.config import Params
from medclass.data.cache import SCRATCH_FILE, decode_images, write_split_cache
from medclass.data.dedup import (
    DuplicateGroups,
    find_duplicates,
    fingerprint,
    group_summary,
    merge_groups,
)
from medclass.data.groups import GROUPS_FILE, cross_split_groups, write_groups
from medclass.data.metadata import read_group_column
from medclass.data.split import (
    ManifestRow,
    build_manifest,
    list_images,
    read_classes,
    stratified_split,
    uses_predefined,
    write_manifest,
)
from medclass.io import write_json


def _near_groups(dups: DuplicateGroups) -> np.ndarray:
    """Mask over duplicate components: True where a near (not exact) pair joined them."""
    pairs = np.unique(np.stack([dups.labels, dups.exact_labels]), axis=1)
    return np.bincount(pairs[0], minlength=int(dups.labels.max(initial=-1)) + 1) > 1


def _members(groups: np.ndarray) -> list[np.ndarray]:
    """Indices of the images of every group with more than one image, in group id order."""
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(np.diff(groups[order])) + 1
    return [m for m in np.split(order, bounds) if len(m) > 1]


def _n_mixed_class_groups(groups: np.ndarray, labels: np.ndarray) -> int:
    """Groups whose images carry more than one class (a label conflict between duplicates)."""
    pairs = np.unique(np.stack([groups, labels]), axis=1)
    return int((np.bincount(pairs[0]) > 1).sum())


def _details(paths: list[str], rows: list[ManifestRow],
             dups: DuplicateGroups) -> list[dict[str, Any]]:
    split_of = {r.path: r.split for r in rows}
    class_of = {r.path: r.class_name for r in rows}
    near = _near_groups(dups)
    out = []
    for idx in _members(dups.labels):
        g = int(dups.labels[idx[0]])
        members = [paths[i] for i in idx]
        out.append({
            "kind": "near" if near[g] else "exact",
            "images": members,
            "classes": sorted({class_of[m] for m in members}),
            "splits": sorted({split_of[m] for m in members}),
        })
    return out


def _report(params: Params, paths: list[str], labels: np.ndarray, classes: list[str],
            dups: DuplicateGroups, by_column: np.ndarray | None, groups: np.ndarray,
            rows: list[ManifestRow], predefined: bool) -> dict[str, Any]:
    """The counts of ``metrics/split_report.json``."""
    sp = params.split
    split_of = {r.path: r.split for r in rows}
    leaks, leak_images = cross_split_groups(groups, np.array([split_of[p] for p in paths]))
    prevented: dict[str, int] | None = None
    if not predefined:  # what a split blind to groups would have leaked with this seed
        plain = stratified_split(labels, sp.val_fraction, sp.test_fraction, params.seed, classes)
        n, m = cross_split_groups(groups, plain)
        prevented = {"groups": n, "images": m}
    n_exact, exact_images = group_summary(dups.exact_labels)
    near = _near_groups(dups)
    dup_sizes, sizes = np.bincount(dups.labels), np.bincount(groups)
    return {
        "n_images": len(paths),
        "exact_duplicates": {"groups": n_exact, "images": exact_images},
        "near_duplicates": {
            "max_distance": sp.near_duplicate_distance,
            "groups": int(near.sum()),
            "images": int(dup_sizes[near].sum()),
            "pairs": dups.n_near_pairs,
        },
        "group_by": sp.group_by,
        "n_group_by_values": None if by_column is None else int(len(np.unique(by_column))),
        "n_groups": int(len(sizes)),
        "n_multi_image_groups": int((sizes > 1).sum()),
        "largest_group": int(sizes.max(initial=0)),
        "groups_with_several_classes": _n_mixed_class_groups(groups, labels),
        "predefined_split": predefined,
        "cross_split_groups": {"groups": leaks, "images": leak_images},
        "leaks_prevented": prevented,
    }


def split_dataset(raw_dir: Path, params: Params, out_dir: Path) -> tuple[dict, dict]:
    """Write the manifest, groups, duplicate list and cache to ``out_dir``; return
    (stats for ``stats.json``, counts for ``metrics/split_report.json``)."""
    raw_dir, out_dir, sp = Path(raw_dir), Path(out_dir), params.split
    classes = read_classes(raw_dir)
    items = list_images(raw_dir, classes)
    paths = [rel for rel, _, _ in items]
    labels = np.array([label for _, label, _ in items], dtype=np.int64)
    by_column = None if sp.group_by is None else read_group_column(raw_dir, sp.group_by, paths)
    scratch = out_dir / "cache" / SCRATCH_FILE
    try:
        # the one decode per image: cache rows (listing order) + fingerprints
        _, prints = decode_images([raw_dir / p for p in paths], params.data.image_size,
                                  params.data.channels, scratch, inspect=fingerprint)
        dups = find_duplicates(prints, sp.near_duplicate_distance)
        groups = dups.labels if by_column is None else merge_groups(dups.labels, by_column)
        group_of = dict(zip(paths, groups.tolist(), strict=True))
        rows = build_manifest(raw_dir, sp, params.seed, groups=group_of)
        images = np.load(scratch, mmap_mode="r")
        try:
            stats = write_split_cache(images, {p: i for i, p in enumerate(paths)}, rows,
                                      classes, out_dir / "cache")
        finally:
            del images
    finally:
        scratch.unlink(missing_ok=True)
    write_manifest(out_dir / "manifest.csv", rows)
    write_groups(out_dir / GROUPS_FILE, paths, groups)
    write_json(out_dir / "duplicates.json", _details(paths, rows, dups))
    predefined = uses_predefined(raw_dir, sp)
    report = _report(params, paths, labels, classes, dups, by_column, groups, rows, predefined)
    return stats, report
