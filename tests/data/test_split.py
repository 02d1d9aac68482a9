"""Tests for the stratified split, predefined splits and the manifest CSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


def make_raw(root: Path, counts: dict[str, int]) -> Path:
    """Write tiny gray PNGs ``root/<class>/img_XX.png`` and classes.json (dict order)."""
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = Image.fromarray(np.full((4, 4), i, np.uint8), "L")
            img.save(root / name / f"img_{i:02d}.png")
    (root / "classes.json").write_text(json.dumps({"classes": list(counts)}))
    return root


def write_predefined(root: Path, mapping: dict[str, str]) -> None:
    lines = ["path,split"] + [f"{p},{s}" for p, s in mapping.items()]
    (root / "predefined_split.csv").write_text("\n".join(lines) + "\n")


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


def test_build_manifest_labels_follow_classes_json_and_rows_are_sorted(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw", {"zeta": 10, "alpha": 10})
    (raw / "alpha" / "notes.txt").write_text("ignored")
    rows = build_manifest(raw, SplitParams(val_fraction=0.2, test_fraction=0.2), seed=0)
    assert len(rows) == 20
    assert {(r.class_name, r.label) for r in rows} == {("zeta", 0), ("alpha", 1)}
    assert all(r.path == f"{r.class_name}/{Path(r.path).name}" for r in rows)
    order = {"train": 0, "val": 1, "test": 2}
    assert rows == sorted(rows, key=lambda r: (order[r.split], r.path))
    assert [r.split for r in rows].count("val") == 4
    assert rows == build_manifest(raw, SplitParams(val_fraction=0.2, test_fraction=0.2), seed=0)


def test_build_manifest_missing_class_folder_is_an_error(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw", {"a": 5})
    (raw / "classes.json").write_text(json.dumps({"classes": ["a", "b"]}))
    with pytest.raises(MedclassError, match="'b' has 0 images"):
        build_manifest(raw, SplitParams(), seed=0)


def test_build_manifest_bad_classes_json(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw", {"a": 5})
    (raw / "classes.json").write_text(json.dumps({"classes": []}))
    with pytest.raises(MedclassError, match="classes.json"):
        build_manifest(raw, SplitParams(), seed=0)


def _predefined_mapping(raw: Path) -> dict[str, str]:
    paths = sorted(p.relative_to(raw).as_posix() for p in raw.glob("*/*.png"))
    return {p: ("test", "val", "train", "train", "train")[i % 5] for i, p in enumerate(paths)}


def test_predefined_split_is_honoured(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw", {"a": 6, "b": 4})
    mapping = _predefined_mapping(raw)
    write_predefined(raw, mapping)
    rows = build_manifest(raw, SplitParams(), seed=0)
    assert {r.path: r.split for r in rows} == mapping


def test_predefined_split_ignored_when_disabled(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw", {"a": 30, "b": 30})
    mapping = {p: "train" for p in _predefined_mapping(raw)}
    mapping["a/img_00.png"], mapping["b/img_00.png"] = "val", "test"
    write_predefined(raw, mapping)
    rows = build_manifest(raw, SplitParams(use_predefined=False), seed=0)
    assert [r.split for r in rows].count("val") == 6


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda m: m.pop("a/img_01.png"), "not listed"),
        (lambda m: m.__setitem__("a/ghost.png", "train"), "not an image"),
        (lambda m: m.__setitem__("a/img_01.png", "holdout"), "not train/val/test"),
        (lambda m: [m.__setitem__(k, "train") for k, v in m.items() if v == "val"], "'val'"),
    ],
)
def test_predefined_split_errors(tmp_path: Path, edit, match: str) -> None:
    raw = make_raw(tmp_path / "raw", {"a": 6, "b": 4})
    mapping = _predefined_mapping(raw)
    edit(mapping)
    write_predefined(raw, mapping)
    with pytest.raises(MedclassError, match=match) as err:
        build_manifest(raw, SplitParams(), seed=0)
    assert "use_predefined" in str(err.value)


def test_predefined_split_duplicate_and_bad_header(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw", {"a": 6})
    csv_path = raw / "predefined_split.csv"
    mapping = _predefined_mapping(raw)
    write_predefined(raw, mapping)
    with csv_path.open("a") as fh:
        fh.write("a/img_00.png,train\n")
    with pytest.raises(MedclassError, match="listed twice"):
        build_manifest(raw, SplitParams(), seed=0)
    csv_path.write_text("file,fold\na/img_00.png,train\n")
    with pytest.raises(MedclassError, match="header"):
        build_manifest(raw, SplitParams(), seed=0)


def test_manifest_round_trip(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw", {"normal": 8, "nodule, odd": 5})
    rows = build_manifest(raw, SplitParams(val_fraction=0.2, test_fraction=0.2), seed=4)
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
