"""Tests for the stratified split, predefined splits and the manifest CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medclass.config import SplitParams
from medclass.data.split import (
    ManifestRow,
    build_manifest,
    read_manifest,
    split_counts,
    stratified_split,
    write_manifest,
)
from medclass.errors import MedclassError


def make_items(counts: dict[str, int], splits: tuple[str, ...] = ("",)
               ) -> tuple[list[tuple[str, int, str, str]], list[str]]:
    """``(path, label, class, source split)`` items, ``split`` cycling through ``splits``."""
    items = []
    for label, (name, n) in enumerate(counts.items()):
        items += [(f"{name}/img_{i:02d}.png", label, name, splits[i % len(splits)])
                  for i in range(n)]
    return items, list(counts)


CLASS_SIZES = {"normal": 50, "nodule": 23, "opacity": 7, "effusion": 3}


def _labels() -> tuple[np.ndarray, list[str]]:
    names = list(CLASS_SIZES)
    labels = np.concatenate([np.full(n, i) for i, n in enumerate(CLASS_SIZES.values())])
    return np.random.default_rng(0).permutation(labels), names


def test_stratified_every_class_in_every_split_with_expected_proportions() -> None:
    labels, names = _labels()
    vf, tf = 0.15, 0.2
    splits = stratified_split(labels, vf, tf, seed=1, class_names=names)
    assert splits.shape == labels.shape
    assert set(splits.tolist()) == {"train", "val", "test"}  # union = all, one split each
    for label, n in enumerate(CLASS_SIZES.values()):
        got = {s: int(np.sum((labels == label) & (splits == s))) for s in ("train", "val", "test")}
        assert min(got.values()) >= 1
        assert sum(got.values()) == n
        assert abs(got["val"] - vf * n) <= 1
        assert abs(got["test"] - tf * n) <= 1
        assert abs(got["train"] - (1 - vf - tf) * n) <= 1


def test_split_indices_do_not_overlap_and_cover_everything() -> None:
    labels, names = _labels()
    splits = stratified_split(labels, 0.1, 0.1, seed=3, class_names=names)
    idx = {s: set(np.flatnonzero(splits == s).tolist()) for s in ("train", "val", "test")}
    assert not idx["train"] & idx["val"]
    assert not idx["train"] & idx["test"]
    assert not idx["val"] & idx["test"]
    assert idx["train"] | idx["val"] | idx["test"] == set(range(len(labels)))


def test_split_is_deterministic_by_seed() -> None:
    labels, names = _labels()
    a = stratified_split(labels, 0.1, 0.2, seed=7, class_names=names)
    b = stratified_split(labels, 0.1, 0.2, seed=7, class_names=names)
    c = stratified_split(labels, 0.1, 0.2, seed=8, class_names=names)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert sorted(a.tolist()) == sorted(c.tolist())  # same sizes, different members


@pytest.mark.parametrize("vf,tf", [(0.1, 0.1), (0.15, 0.2), (0.45, 0.45), (0.05, 0.9), (0.3, 0.01)])
def test_split_counts_always_leave_every_split_an_image(vf: float, tf: float) -> None:
    for n in range(3, 120):
        n_train, n_val, n_test = split_counts(n, vf, tf)
        assert n_train + n_val + n_test == n
        assert min(n_train, n_val, n_test) >= 1
        if min(vf, tf, 1 - vf - tf) * n >= 1:  # the one-image minimums do not bind
            assert abs(n_val - vf * n) <= 1 + 1e-9 and abs(n_test - tf * n) <= 1 + 1e-9


def test_too_few_images_error_names_class_ratio_and_fix() -> None:
    labels = np.array([0] * 10 + [1] * 2)
    with pytest.raises(MedclassError) as err:
        stratified_split(labels, 0.1, 0.1, seed=0, class_names=["normal", "nodule"])
    msg = str(err.value)
    assert "'nodule' has 2 images" in msg and "80/10/10" in msg and "at least 3" in msg
    assert "split.val_fraction" in msg and "\n" not in msg


def test_class_without_images_is_an_error() -> None:
    labels = np.array([0, 0, 0, 0])
    with pytest.raises(MedclassError, match="'empty' has 0 images"):
        stratified_split(labels, 0.2, 0.2, seed=0, class_names=["full", "empty"])


def test_three_images_per_class_are_enough() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    splits = stratified_split(labels, 0.1, 0.1, seed=0, class_names=["a", "b"])
    for label in (0, 1):
        assert sorted(splits[labels == label].tolist()) == ["test", "train", "val"]


def test_build_manifest_rows_are_sorted_and_deterministic() -> None:
    items, classes = make_items({"zeta": 10, "alpha": 10})
    params = SplitParams(val_fraction=0.2, test_fraction=0.2)
    rows = build_manifest(items, params, seed=0, classes=classes)
    assert len(rows) == 20
    assert {(r.class_name, r.label) for r in rows} == {("zeta", 0), ("alpha", 1)}
    order = {"train": 0, "val": 1, "test": 2}
    assert rows == sorted(rows, key=lambda r: (order[r.split], r.path))
    assert [r.split for r in rows].count("val") == 4
    assert rows == build_manifest(items, params, seed=0, classes=classes)


def test_predefined_split_is_honoured() -> None:
    items, classes = make_items({"a": 6, "b": 4}, ("test", "val", "train", "train", "train"))
    rows = build_manifest(items, SplitParams(), seed=0, classes=classes)
    assert {r.path: r.split for r in rows} == {i[0]: i[3] for i in items}


def test_predefined_split_ignored_when_disabled() -> None:
    items, classes = make_items({"a": 30, "b": 30}, ("train",))
    rows = build_manifest(items, SplitParams(use_predefined=False), seed=0, classes=classes)
    assert [r.split for r in rows].count("val") == 6


@pytest.mark.parametrize("given,carved", [(("train", "test"), "val"), (("train", "val"), "test")])
def test_missing_split_is_carved_from_train_only(given: tuple[str, ...], carved: str) -> None:
    items, classes = make_items({"a": 40, "b": 20}, given)
    params = SplitParams(val_fraction=0.25, test_fraction=0.1)
    rows = build_manifest(items, params, seed=3, classes=classes)
    source = {i[0]: i[3] for i in items}
    kept = given[1]
    assert all(r.split == kept for r in rows if source[r.path] == kept)  # never moved
    from_train = [r for r in rows if source[r.path] == "train"]
    fraction = params.val_fraction if carved == "val" else params.test_fraction
    for label, n_train in ((0, 20), (1, 10)):
        got = sum(r.split == carved and r.label == label for r in from_train)
        assert got == split_counts(n_train, *((fraction, 0) if carved == "val" else (0, fraction)))[
            1 if carved == "val" else 2]


def test_carved_val_keeps_groups_whole() -> None:
    items, classes = make_items({"a": 40, "b": 40}, ("train", "test"))
    groups = np.array([i // 4 for i in range(len(items))])  # 4 images per patient
    rows = build_manifest(items, SplitParams(), seed=0, classes=classes, groups=groups)
    split_of = {r.path: r.split for r in rows}
    for g in np.unique(groups):  # within the train folder a patient is never split
        members = [items[i][0] for i in np.flatnonzero(groups == g) if items[i][3] == "train"]
        assert len({split_of[m] for m in members}) <= 1
    assert "val" in split_of.values()


@pytest.mark.parametrize("splits,match", [(("val", "test"), "no train"), (("train", ""),
                                                                            "have no split")])
def test_predefined_split_errors(splits: tuple[str, ...], match: str) -> None:
    items, classes = make_items({"a": 6, "b": 4}, splits)
    with pytest.raises(MedclassError, match=match) as err:
        build_manifest(items, SplitParams(), seed=0, classes=classes)
    assert "use_predefined" in str(err.value) and "\n" not in str(err.value)


def test_manifest_round_trip(tmp_path: Path) -> None:
    items, classes = make_items({"normal": 8, "nodule, odd": 5})
    rows = build_manifest(items, SplitParams(val_fraction=0.2, test_fraction=0.2), seed=4,
                          classes=classes)
    path = tmp_path / "out" / "manifest.csv"
    write_manifest(path, rows)
    assert path.read_text().splitlines()[0] == "path,label,class_name,split"
    assert read_manifest(path) == rows
    assert all(isinstance(r, ManifestRow) for r in read_manifest(path))


def test_read_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(MedclassError, match="dvc repro split"):
        read_manifest(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,split\n")
    with pytest.raises(MedclassError, match="header"):
        read_manifest(bad)
    bad.write_text("path,label,class_name,split\na/x.png,zero,a,train\n")
    with pytest.raises(MedclassError, match="line 2"):
        read_manifest(bad)
