"""Stratified train/val/test split of the raw folder and the manifest CSV that records it."""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from medclass.config import SplitParams
from medclass.data.groups import grouped_split
from medclass.errors import MedclassError
from medclass.io import atomic_path, read_json

SPLITS: tuple[str, ...] = ("train", "val", "test")
MANIFEST_HEADER: tuple[str, ...] = ("path", "label", "class_name", "split")
_FIX_FRACTIONS = "add images or change split.val_fraction/test_fraction"
_FIX_GROUPS = ("add images, lower split.val_fraction/test_fraction, or group less "
               "(split.near_duplicate_distance, split.group_by, split.group_pattern)")


@dataclass(frozen=True)
class ManifestRow:
    """One image: path relative to the raw folder (forward slashes), label, class and split."""

    path: str
    label: int
    class_name: str
    split: str


def _pct(fraction: float) -> str:
    return f"{round(fraction * 100, 2):g}"


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) sizes for one class of ``n`` images.

    val/test get ``round(fraction * n)`` but at least 1 when their fraction is > 0; if that
    leaves train empty the larger of val/test gives images back until train has one.
    """
    n_val = max(1, _round_half_up(val_fraction * n)) if val_fraction > 0 else 0
    n_test = max(1, _round_half_up(test_fraction * n)) if test_fraction > 0 else 0
    while n - n_val - n_test < 1 and max(n_val, n_test) > 1:
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


def min_per_class(val_fraction: float, test_fraction: float) -> int:
    """Fewest images a class needs so that every split with a positive fraction gets one."""
    return 1 + int(val_fraction > 0) + int(test_fraction > 0)


def stratified_split(
    labels: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    class_names: list[str],
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Assign 'train'/'val'/'test' to each label, stratified per class and deterministic by seed.

    Per-class sizes come from :func:`split_counts` (so even a rare class lands in every split);
    which images go where is drawn by scikit-learn's ``train_test_split`` with one seeded
    ``RandomState`` consumed class by class. With ``groups`` (an id per image) in which some
    group has several images, whole groups are assigned instead (``groups.grouped_split``), so
    the images of one group never straddle two splits.
    """
    labels = np.asarray(labels)
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise MedclassError(
            f"split fractions val={val_fraction}, test={test_fraction} are invalid; "
            "use values in [0, 1) that sum to < 1"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(f"labels must be in [0, {len(class_names)})")
    needed = min_per_class(val_fraction, test_fraction)
    fractions = (1 - val_fraction - test_fraction, val_fraction, test_fraction)
    ratio = "/".join(_pct(f) for f in fractions)
    counts = np.bincount(labels.astype(np.int64), minlength=len(class_names))
    for name, count in zip(class_names, counts, strict=True):
        if count < needed:
            raise MedclassError(
                f"class {name!r} has {count} images; a {ratio} split needs at least {needed} "
                f"per class — {_FIX_FRACTIONS}"
            )
    if groups is not None and len(np.unique(groups)) < labels.shape[0]:
        targets = np.array(
            [split_counts(int(c), val_fraction, test_fraction) for c in counts], dtype=np.int64
        ).T
        return grouped_split(labels, groups, targets, seed, class_names, SPLITS, needed,
                             _FIX_GROUPS)
    out = np.full(labels.shape[0], "train", dtype="<U5")
    rng = np.random.RandomState(seed)
    for label, count in enumerate(counts):
        idx = np.flatnonzero(labels == label)
        _, n_val, n_test = split_counts(int(count), val_fraction, test_fraction)
        rest = idx
        if n_test:
            rest, test_idx = train_test_split(rest, test_size=n_test, random_state=rng)
            out[test_idx] = "test"
        if n_val:
            _, val_idx = train_test_split(rest, test_size=n_val, random_state=rng)
            out[val_idx] = "val"
    return out


def _sort_key(row: ManifestRow) -> tuple[int, str]:
    return SPLITS.index(row.split), row.path


def read_classes(raw_dir: Path) -> list[str]:
    """Class names in label order from ``raw_dir/classes.json``."""
    path = Path(raw_dir) / "classes.json"
    data = read_json(path)
    classes = data.get("classes") if isinstance(data, dict) else None
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise MedclassError(
            f"{path} must be {{\"classes\": [unique non-empty names]}}; rerun `dvc repro prepare`"
        )
    return classes


def _carve(labels: np.ndarray, groups: np.ndarray | None, splits: list[str],
           params: SplitParams, seed: int, classes: list[str]) -> list[str]:
    """Keep a source's own splits; a missing val/test split is carved from train (stratified,
    group-aware) with ``split.val_fraction`` / ``test_fraction`` of the train images."""
    present = set(splits)
    missing = [s for s in SPLITS if s not in present]
    if "" in present:
        n = splits.count("")
        raise MedclassError(
            f"{n} images have no split in the source's predefined split; give every image "
            "one, or set split.use_predefined: false"
        )
    if "train" in missing:
        raise MedclassError(
            "the source's predefined split has no train images; add a train split or set "
            "split.use_predefined: false"
        )
    if not missing:
        return splits
    train = np.flatnonzero(np.asarray(splits) == "train")
    carved = stratified_split(
        labels[train],
        params.val_fraction if "val" in missing else 0.0,
        params.test_fraction if "test" in missing else 0.0,
        seed, classes, groups=None if groups is None else groups[train],
    )
    out = list(splits)
    for i, split in zip(train.tolist(), carved.tolist(), strict=True):
        out[i] = split
    return out


def uses_predefined(splits: list[str], params: SplitParams) -> bool:
    """True when the source gave splits (a pre-split tree, npz, a CSV split column) and
    ``split.use_predefined`` keeps them."""
    return params.use_predefined and any(splits)


def build_manifest(
    items: list[tuple[str, int, str, str]],
    params: SplitParams,
    seed: int,
    classes: list[str],
    groups: np.ndarray | None = None,
) -> list[ManifestRow]:
    """Split ``items`` ``(path, label, class name, source split or "")``: the source's splits
    when :func:`uses_predefined` (missing val/test carved from train), else
    :func:`stratified_split`, group-aware when ``groups`` (an id per item) is given. Rows are
    sorted by (train, val, test) then path."""
    labels = np.array([label for _, label, _, _ in items], dtype=np.int64)
    source_splits = [split for _, _, _, split in items]
    if uses_predefined(source_splits, params):
        splits = _carve(labels, groups, source_splits, params, seed, classes)
    else:
        splits = stratified_split(
            labels, params.val_fraction, params.test_fraction, seed, classes, groups=groups
        ).tolist()
    rows = [
        ManifestRow(rel, label, name, str(split))
        for (rel, label, name, _), split in zip(items, splits, strict=True)
    ]
    return sorted(rows, key=_sort_key)


def write_manifest(path: str | os.PathLike, rows: list[ManifestRow]) -> None:
    """Write rows atomically as CSV with header ``path,label,class_name,split``."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MANIFEST_HEADER)
        for r in rows:
            writer.writerow((r.path, r.label, r.class_name, r.split))


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """Read a manifest written by :func:`write_manifest`, with a one-line error if unusable."""
    p = Path(path)
    fix = "delete it and rerun `dvc repro split`"
    rows: list[ManifestRow] = []
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or tuple(header) != MANIFEST_HEADER:
                raise MedclassError(f"{p}: header must be {','.join(MANIFEST_HEADER)}; {fix}")
            for line_no, rec in enumerate(reader, start=2):
                if len(rec) != 4 or rec[3] not in SPLITS or not rec[1].isdigit():
                    raise MedclassError(f"{p} line {line_no}: malformed row; {fix}")
                rows.append(ManifestRow(rec[0], int(rec[1]), rec[2], rec[3]))
    except FileNotFoundError as exc:
        raise MedclassError(f"{p} not found; run `dvc repro split`") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MedclassError(f"cannot read {p} ({type(exc).__name__}); {fix}") from exc
    return rows
