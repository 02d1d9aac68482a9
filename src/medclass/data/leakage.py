"""The split stage's work: duplicate/group detection, a leak-free split, one decode per image.

Prepare fingerprinted every image (``dedup.fingerprint``); here exact and near duplicates, plus
images that share a ``split.group_by`` value, a ``split.group_pattern`` match on their path or a
CSV source's group column, form groups that the split keeps whole. Each source file is then
decoded once, at the training resolution, into the cache (``cache.decode_images``). Outputs in
``out_dir``: ``manifest.csv``, ``groups.csv`` (``path,group`` for every image; kfold reads
it), ``duplicates.json`` (every duplicate group with its images, kind and splits) and the cache;
the returned report (counts only) becomes ``metrics/split_report.json``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from medclass.config import Params, SplitParams
from medclass.data.cache import SCRATCH_FILE, decode_images, resolve_channels, write_split_cache
from medclass.data.dedup import (
    DuplicateGroups,
    Fingerprint,
    find_duplicates,
    group_summary,
    merge_groups,
)
from medclass.data.groups import GROUPS_FILE, cross_split_groups, write_groups
from medclass.data.metadata import read_group_column
from medclass.data.raw_manifest import MANIFEST_FILE, RawRow, read_raw_manifest, source_root
from medclass.data.split import (
    ManifestRow,
    build_manifest,
    read_classes,
    stratified_split,
    uses_predefined,
    write_manifest,
)
from medclass.io import write_json


def _ids(values: list[str]) -> np.ndarray:
    """Equal non-empty values share an id; an empty value is a group of its own."""
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(v or f"\0{i}", len(ids)) for i, v in enumerate(values)],
                    dtype=np.int64)


def pattern_groups(paths: list[str], pattern: str) -> tuple[np.ndarray, dict[str, int]]:
    """Group ids from the first capture group of ``pattern`` searched in each path (no match:
    its own group), and the counts for the split report."""
    regex = re.compile(pattern)
    values = []
    for path in paths:
        m = regex.search(path)
        values.append(m.group(1) or "" if m else "")
    matched = sum(bool(v) for v in values)
    ids = _ids(values)
    return ids, {"matched": matched, "unmatched": len(paths) - matched,
                 "groups": int(len(set(v for v in values if v)))}


def _user_groups(raw_dir: Path, raw: list[RawRow], sp: SplitParams,
                 paths: list[str]) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Labelings from group_by, group_pattern and a CSV group column, with their counts."""
    labelings, info = [], {}
    if sp.group_by is not None:
        by_column = read_group_column(raw_dir, sp.group_by, paths)
        labelings.append(by_column)
        info["n_group_by_values"] = int(len(np.unique(by_column)))
    if sp.group_pattern is not None:
        ids, counts = pattern_groups(paths, sp.group_pattern)
        labelings.append(ids)
        info["group_pattern"] = {"pattern": sp.group_pattern, **counts}
    if any(r.group for r in raw):
        column = [r.group for r in raw]
        labelings.append(_ids(column))
        info["group_column"] = {"images_with_group": sum(bool(v) for v in column),
                                "groups": len({v for v in column if v})}
    return labelings, info


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
            dups: DuplicateGroups, user: dict[str, Any], groups: np.ndarray,
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
        "n_group_by_values": user.get("n_group_by_values"),
        "group_pattern": user.get("group_pattern"),
        "group_column": user.get("group_column"),
        "n_groups": int(len(sizes)),
        "n_multi_image_groups": int((sizes > 1).sum()),
        "largest_group": int(sizes.max(initial=0)),
        "groups_with_several_classes": _n_mixed_class_groups(groups, labels),
        "predefined_split": predefined,
        "cross_split_groups": {"groups": leaks, "images": leak_images},
        "leaks_prevented": prevented,
    }


def _fingerprints(raw: list[RawRow]) -> list[Fingerprint]:
    return [Fingerprint(r.file_sha256, r.pixel_sha256, bytes.fromhex(r.phash)) for r in raw]


def _decode_cache(root: Path, raw: list[RawRow], rows: list[ManifestRow], classes: list[str],
                  params: Params, out_dir: Path) -> dict[str, Any]:
    """Decode each source file once into the per-split cache; return the stats."""
    paths = [r.path for r in raw]
    channels = resolve_channels(params.data.channels, {r.mode for r in raw})
    scratch = out_dir / SCRATCH_FILE
    try:
        decode_images([root / p for p in paths], params.data.image_size, channels, scratch)
        images = np.load(scratch, mmap_mode="r")
        try:
            return write_split_cache(images, {p: i for i, p in enumerate(paths)}, rows,
                                     classes, out_dir)
        finally:
            del images
    finally:
        scratch.unlink(missing_ok=True)


def split_dataset(raw_dir: Path, params: Params, out_dir: Path) -> tuple[dict, dict]:
    """Write the manifest, groups, duplicate list and cache to ``out_dir``; return
    (stats for ``stats.json``, counts for ``metrics/split_report.json``)."""
    raw_dir, out_dir, sp = Path(raw_dir), Path(out_dir), params.split
    classes = read_classes(raw_dir)
    raw = read_raw_manifest(raw_dir / MANIFEST_FILE)
    paths = [r.path for r in raw]
    labels = np.array([r.label for r in raw], dtype=np.int64)
    labelings, user = _user_groups(raw_dir, raw, sp, paths)
    dups = find_duplicates(_fingerprints(raw), sp.near_duplicate_distance)
    groups = merge_groups(dups.labels, *labelings) if labelings else dups.labels
    items = [(r.path, r.label, r.class_name, r.split) for r in raw]
    rows = build_manifest(items, sp, params.seed, classes, groups=groups)
    stats = _decode_cache(source_root(raw_dir), raw, rows, classes, params, out_dir / "cache")
    write_manifest(out_dir / "manifest.csv", rows)
    write_groups(out_dir / GROUPS_FILE, paths, groups)
    write_json(out_dir / "duplicates.json", _details(paths, rows, dups))
    predefined = uses_predefined([r.split for r in raw], sp)
    report = _report(params, paths, labels, classes, dups, user, groups, rows, predefined)
    return stats, report
