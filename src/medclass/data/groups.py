"""Group-aware stratified train/val/test assignment and the split's ``groups.csv``.

A *group* is a set of images that must land in the same split: duplicates of one another
(``dedup.py``) and/or images sharing a ``split.group_by`` value (e.g. one patient). Groups are
assigned whole, greedily, largest first (ties in seeded random order), each to the split where
it brings the per-class counts closest to the targets of :func:`split_counts` (a chi-square
distance). A repair pass then moves small groups so that every class appears in every split.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medclass.errors import MedclassError
from medclass.io import atomic_path

GROUPS_FILE = "groups.csv"


def write_groups(path: Path, paths: Sequence[str], groups: np.ndarray) -> None:
    """``path,group`` for every image (integer ids; equal id = same group, same split)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("path", "group"))
        writer.writerows(zip(paths, np.asarray(groups).tolist(), strict=True))


def read_groups(path: str | os.PathLike) -> dict[str, int] | None:
    """The split stage's ``groups.csv`` as {raw path: group id}; None when it does not exist."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            return {rec["path"]: int(rec["group"]) for rec in csv.DictReader(fh)}
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as exc:
        raise MedclassError(
            f"cannot read {p} ({type(exc).__name__}); delete it and rerun `dvc repro split`"
        ) from exc


def _class_matrix(labels: np.ndarray, groups: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_groups, n_classes) image counts."""
    mat = np.zeros((int(groups.max()) + 1, n_classes), dtype=np.int64)
    np.add.at(mat, (groups, labels), 1)
    return mat


def _greedy(mat: np.ndarray, targets: np.ndarray, seed: int) -> np.ndarray:
    """Split index per group: largest groups first, each where it best approaches targets."""
    n_groups = mat.shape[0]
    order = np.random.RandomState(seed).permutation(n_groups)
    order = order[np.argsort(-mat[order].sum(axis=1), kind="stable")]
    assigned = np.zeros_like(targets)
    scale = np.maximum(targets, 1).astype(np.float64)
    active = targets.sum(axis=1) > 0
    where = np.zeros(n_groups, dtype=np.int64)
    for g in order:
        row = mat[g]
        # Change of sum((assigned - target)^2 / target) when the group joins each split.
        delta = (row * (2 * (assigned - targets) + row) / scale).sum(axis=1)
        delta[~active] = np.inf
        s = int(np.argmin(delta))
        where[g] = s
        assigned[s] += row
    return where


def _repair(mat: np.ndarray, where: np.ndarray, active: np.ndarray) -> tuple[int, int] | None:
    """Move groups until every class is in every active split; return a hole left, if any."""
    n_splits = len(active)
    for _ in range(mat.shape[0] * n_splits + 1):
        present = np.zeros((n_splits, mat.shape[1]), dtype=np.int64)
        np.add.at(present, where, (mat > 0).astype(np.int64))
        holes = [(s, c) for s in range(n_splits) if active[s] for c in range(mat.shape[1])
                 if present[s, c] == 0]
        if not holes:
            return None
        s, c = holes[0]
        best = None
        for g in np.flatnonzero(mat[:, c] > 0):
            src = where[g]
            has = mat[g] > 0
            # moving g must not empty a class in its current split
            if src == s or np.any(present[src][has] == 1):
                continue
            if best is None or mat[g].sum() < mat[best].sum():
                best = int(g)
        if best is None:
            return s, c
        where[best] = s
    return None  # pragma: no cover - every move fills a hole without opening another


def grouped_split(
    labels: np.ndarray,
    groups: np.ndarray,
    targets: np.ndarray,
    seed: int,
    class_names: Sequence[str],
    splits: Sequence[str],
    needed: int,
    fix: str,
) -> np.ndarray:
    """Split name per image with whole groups per split; ``targets`` is (splits, classes).

    Raises a one-line error naming the class when it has too few groups to reach every split.
    """
    labels = np.asarray(labels, dtype=np.int64)
    _, groups = np.unique(np.asarray(groups), return_inverse=True)
    mat = _class_matrix(labels, groups, len(class_names))
    per_class = (mat > 0).sum(axis=0)
    for name, n in zip(class_names, per_class, strict=True):
        if n < needed:
            raise MedclassError(
                f"class {name!r} has {n} image groups (duplicates / patient groups); every split "
                f"needs one, so at least {needed} — {fix}"
            )
    where = _greedy(mat, targets, seed)
    hole = _repair(mat, where, targets.sum(axis=1) > 0)
    if hole is not None:
        raise MedclassError(
            f"class {class_names[hole[1]]!r} cannot reach the {splits[hole[0]]} split without "
            f"splitting an image group (duplicates / patient groups) — {fix}"
        )
    return np.asarray(splits)[where[groups]]


def cross_split_groups(groups: np.ndarray, splits: np.ndarray) -> tuple[int, int]:
    """(groups spread over more than one split, images in them)."""
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    _, s = np.unique(np.asarray(splits), return_inverse=True)
    lo = np.full(int(g.max(initial=-1)) + 1, np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full_like(lo, -1)
    np.minimum.at(lo, g, s)
    np.maximum.at(hi, g, s)
    leaking = lo < hi
    return int(leaking.sum()), int(leaking[g].sum())
