"""Folder layouts as users download them: ``train/ val/ test/`` trees, ``train/ test/`` (val
carved from train), flat class folders, split-named classes, and refused mixed levels; patient
grouping by file name (``split.group_pattern``) on a pre-split tree and in kfold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medclass.config import DataParams, parse_params
from medclass.data.groups import read_groups
from medclass.data.layout import detect_layout
from medclass.data.leakage import pattern_groups, split_dataset
from medclass.data.raw_manifest import read_raw_manifest
from medclass.data.sources import prepare_raw
from medclass.data.split import read_manifest
from medclass.errors import MedclassError
from medclass.train.kfold import make_folds, trainval_groups


def _img(path: Path, seed: int) -> None:
    """A small JPEG unlike every other one (no accidental near duplicates)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = (rng.random((24, 24)) * 255).astype(np.uint8)
    Image.fromarray(arr, "L").save(path, quality=95)


def chest_tree(root: Path, splits: tuple[str, ...] = ("train", "test"),
               patients: int = 12) -> Path:
    """A Kaggle-style chest X-ray tree: ``<split>/{NORMAL,PNEUMONIA}/…`` with file names that
    carry the patient (``personN_virus_M.jpeg``, ``IM-NNNN-MMMM.jpeg``)."""
    seed = 0
    for s_index, split in enumerate(splits):
        base = s_index * 1000
        for p in range(patients):
            for _k in range(3):
                seed += 1
                _img(root / split / "PNEUMONIA" / f"person{base + p}_virus_{seed}.jpeg", seed)
            for k in range(2):
                seed += 1
                _img(root / split / "NORMAL" / f"IM-{base + p:04d}-{k:04d}.jpeg", seed)
    return root


def _error(root: Path, **kw: object) -> str:
    with pytest.raises(MedclassError) as err:
        prepare_raw(DataParams(source="folder", path=str(root), **kw), 0, root.parent / "raw")
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def _params(tmp: Path, src: Path, **split: object) -> object:
    return parse_params({"data": {"source": "folder", "path": str(src), "image_size": 8},
                         "split": split})


def test_train_test_tree_is_the_split_and_val_is_carved_from_train(tmp_path: Path) -> None:
    src = chest_tree(tmp_path / "chest_xray")
    report = prepare_raw(DataParams(source="folder", path=str(src)), 0, tmp_path / "raw")
    assert report["layout"] == "splits" and report["classes"] == {"NORMAL": 48, "PNEUMONIA": 72}
    assert report["splits"] == {"train": {"NORMAL": 24, "PNEUMONIA": 36},
                                "test": {"NORMAL": 24, "PNEUMONIA": 36}}
    assert report["split_folders"] == {"train": "train", "test": "test"}
    params = _params(tmp_path, src, val_fraction=0.25)
    stats, split_report = split_dataset(tmp_path / "raw", params, tmp_path / "split")
    rows = read_manifest(tmp_path / "split" / "manifest.csv")
    from_test = {r.path for r in rows if r.path.startswith("test/")}
    assert {r.path for r in rows if r.split == "test"} == from_test  # the tree's own test
    assert all(r.path.startswith("train/") for r in rows if r.split == "val")
    assert stats["counts"]["val"] == {"NORMAL": 6, "PNEUMONIA": 9}
    assert split_report["predefined_split"] is True


def test_train_val_test_tree_is_kept_as_is(tmp_path: Path) -> None:
    src = chest_tree(tmp_path / "t", ("Training", "valid", "Testing"), patients=3)
    prepare_raw(DataParams(source="folder", path=str(src)), 0, tmp_path / "raw")
    split_dataset(tmp_path / "raw", _params(tmp_path, src), tmp_path / "split")
    rows = read_manifest(tmp_path / "split" / "manifest.csv")
    folder = {"Training": "train", "valid": "val", "Testing": "test"}
    assert all(r.split == folder[r.path.split("/")[0]] for r in rows)


def test_use_predefined_false_pools_the_split_folders(tmp_path: Path) -> None:
    src = chest_tree(tmp_path / "t")
    prepare_raw(DataParams(source="folder", path=str(src)), 0, tmp_path / "raw")
    params = _params(tmp_path, src, use_predefined=False)
    _, report = split_dataset(tmp_path / "raw", params, tmp_path / "split")
    rows = read_manifest(tmp_path / "split" / "manifest.csv")
    assert report["predefined_split"] is False
    assert {r.path.split("/")[0] for r in rows if r.split == "test"} == {"train", "test"}


def test_flat_class_tree_and_split_named_classes(tmp_path: Path) -> None:
    for i, name in enumerate(("benign", "malignant")):
        for k in range(3):
            _img(tmp_path / "flat" / name / f"{k}.png", 10 * i + k)
    assert detect_layout(tmp_path / "flat").kind == "classes"
    for i, name in enumerate(("train", "test")):  # classes that really are called like splits
        for k in range(3):
            _img(tmp_path / "odd" / name / f"{k}.png", 100 + 10 * i + k)
    report = prepare_raw(DataParams(source="folder", path=str(tmp_path / "odd"),
                                    layout="classes"), 0, tmp_path / "raw")
    assert report["layout"] == "classes" and report["classes"] == {"test": 3, "train": 3}
    assert {r.split for r in read_raw_manifest(tmp_path / "raw" / "manifest.csv")} == {""}


def test_layout_errors_name_the_folders_and_the_fix(tmp_path: Path) -> None:
    src = chest_tree(tmp_path / "mixed", patients=1)
    _img(src / "NORMAL" / "stray.png", 7)
    msg = _error(src)
    assert "mixes split folders ['test', 'train'] with other folders ['NORMAL']" in msg
    assert "data.layout: classes" in msg
    missing = chest_tree(tmp_path / "missing", patients=1)
    for f in (missing / "test" / "NORMAL").iterdir():
        f.unlink()
    (missing / "test" / "NORMAL").rmdir()
    assert "['NORMAL'] are missing from" in _error(missing)
    no_train = chest_tree(tmp_path / "notrain", ("val", "test"), patients=1)
    assert "no train folder" in _error(no_train)
    twice = chest_tree(tmp_path / "twice", ("train", "val", "valid"), patients=1)
    assert "are both the val split" in _error(twice)
    flat = tmp_path / "flat2"
    for name in ("a", "b"):
        _img(flat / name / "1.png", 3)
    assert "that are not train/val/test" in _error(flat, layout="splits")


def test_group_pattern_keeps_patients_whole_and_counts_unmatched(tmp_path: Path) -> None:
    src = chest_tree(tmp_path / "t", patients=10)
    _img(src / "train" / "NORMAL" / "scan_without_id.jpeg", 999)
    prepare_raw(DataParams(source="folder", path=str(src)), 0, tmp_path / "raw")
    params = _params(tmp_path, src, group_pattern=r"(person\d+|IM-\d+)", val_fraction=0.3)
    _, report = split_dataset(tmp_path / "raw", params, tmp_path / "split")
    assert report["group_pattern"] == {"pattern": r"(person\d+|IM-\d+)", "matched": 100,
                                       "unmatched": 1, "groups": 40}
    rows = read_manifest(tmp_path / "split" / "manifest.csv")
    groups = read_groups(tmp_path / "split" / "groups.csv")
    by_group: dict[int, set[str]] = {}
    for r in rows:
        by_group.setdefault(groups[r.path], set()).add(r.split)
    assert all(len(s) == 1 for s in by_group.values())
    assert report["cross_split_groups"] == {"groups": 0, "images": 0}


def test_group_pattern_warns_about_patients_across_official_splits(tmp_path: Path) -> None:
    src = chest_tree(tmp_path / "t", patients=4)
    _img(src / "test" / "PNEUMONIA" / "person0_virus_77.jpeg", 4242)  # train's person0
    prepare_raw(DataParams(source="folder", path=str(src)), 0, tmp_path / "raw")
    params = _params(tmp_path, src, group_pattern=r"(person\d+)_")
    _, report = split_dataset(tmp_path / "raw", params, tmp_path / "split")
    assert report["cross_split_groups"] == {"groups": 1, "images": 4}


def test_pattern_groups_unit() -> None:
    ids, counts = pattern_groups(["a/person1_x.png", "b/person1_y.png", "c/other.png",
                                  "d/person2_z.png"], r"(person\d+)_")
    assert ids[0] == ids[1] and len(set(ids.tolist())) == 3
    assert counts == {"matched": 3, "unmatched": 1, "groups": 2}


@pytest.mark.parametrize("pattern,match", [("(person", "not a valid regular expression"),
                                           (r"person\d+", "no capture group")])
def test_bad_group_pattern_fails_params_validation(pattern: str, match: str) -> None:
    with pytest.raises(MedclassError, match=match) as err:
        parse_params({"split": {"group_pattern": pattern}})
    assert "\n" not in str(err.value)


def test_group_pattern_patients_stay_in_one_kfold_fold(tmp_path: Path) -> None:
    src = chest_tree(tmp_path / "t", ("train", "val", "test"), patients=6)
    prepare_raw(DataParams(source="folder", path=str(src)), 0, tmp_path / "raw")
    params = _params(tmp_path, src, group_pattern=r"(person\d+|IM-\d+)")
    split_dataset(tmp_path / "raw", params, tmp_path / "split")
    rows = read_manifest(tmp_path / "split" / "manifest.csv")
    trainval = [r for s in ("train", "val") for r in rows if r.split == s]  # cache order
    groups = trainval_groups(tmp_path / "split")
    labels = np.array([r.label for r in trainval])
    folds = make_folds(labels, 3, 0, ["NORMAL", "PNEUMONIA"], groups=groups)
    fold_of = np.empty(len(labels), dtype=int)
    for k, (_, val) in enumerate(folds):
        fold_of[val] = k
    for g in np.unique(groups):
        assert len(set(fold_of[groups == g].tolist())) == 1  # a patient never straddles folds
    assert len(np.unique(groups)) == 24  # 12 patients per split folder, 2 per patient id
