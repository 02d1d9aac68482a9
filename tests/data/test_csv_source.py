"""``data.source: csv``: an image folder plus a labels CSV, shaped like APTOS / HAM10000 / ISIC
downloads: id-only names, missing and unlisted files, duplicate and conflicting rows,
multi-label refusal, group and split columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medclass.config import CsvParams, DataParams, parse_params
from medclass.data.groups import read_groups
from medclass.data.leakage import split_dataset
from medclass.data.raw_manifest import read_raw_manifest
from medclass.data.sources import prepare_raw
from medclass.data.split import read_manifest
from medclass.errors import MedclassError


def _img(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (np.random.default_rng(seed).random((16, 16, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr, "RGB").save(path)


def _csv(data: DataParams, tmp: Path) -> tuple[dict, dict]:
    report = prepare_raw(data, 0, tmp / "raw")
    return report, {r.path: r for r in read_raw_manifest(tmp / "raw" / "manifest.csv")}


def _error(data: DataParams, tmp: Path) -> str:
    with pytest.raises(MedclassError) as err:
        prepare_raw(data, 0, tmp / "raw_err")
    assert "\n" not in str(err.value) and not (tmp / "raw_err").exists()
    return str(err.value)


def aptos(root: Path) -> DataParams:
    """APTOS 2019: ``train.csv`` (id_code,diagnosis 0..4) + ``train_images/<id>.png``."""
    lines = ["id_code,diagnosis"]
    for i in range(15):
        _img(root / "train_images" / f"{i:04x}abc.png", i)
        lines.append(f"{i:04x}abc,{i % 3}")
    lines.append("ffffabc,1")  # a row whose image is missing
    _img(root / "train_images" / "extra_no_row.png", 99)  # an image with no row
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    csv = CsvParams(file="train.csv", image_dir="train_images", image_column="id_code",
                    label_column="diagnosis", extension=".png")
    return DataParams(source="csv", path=str(root), csv=csv,
                      class_names=["no_dr", "mild", "moderate"])


def test_aptos_ids_with_extension_integer_labels_and_names(tmp_path: Path) -> None:
    report, rows = _csv(aptos(tmp_path / "aptos"), tmp_path)
    assert report["layout"] == "csv" and report["n_images"] == 15
    assert report["classes"] == {"no_dr": 5, "mild": 5, "moderate": 5}
    row = rows["train_images/0004abc.png"]
    assert (row.label, row.class_name) == (1, "mild")  # label value 1 -> index 1
    csv = report["csv"]
    assert csv["rows"] == 16 and csv["images"] == 15
    assert csv["missing_files"] == {"count": 1, "examples": ["line 17: ffffabc"]}
    assert csv["unlisted_files"] == {"count": 1, "examples": ["train_images/extra_no_row.png"]}
    assert not list((tmp_path / "raw").rglob("*.png"))  # read in place, no copies


def test_integer_labels_without_names_and_a_label_without_a_name(tmp_path: Path) -> None:
    data = aptos(tmp_path / "a")
    report, _ = _csv(data.model_copy(update={"class_names": None}), tmp_path)
    assert report["classes"] == {"0": 5, "1": 5, "2": 5}
    short = data.model_copy(update={"class_names": ["no_dr", "mild"]})
    assert "label 2 has no name in data.class_names" in _error(short, tmp_path)


def ham10000(root: Path) -> DataParams:
    """HAM10000: ``HAM10000_metadata.csv`` (lesion_id,image_id,dx) with images split over two
    part folders, several images per lesion."""
    lines = ["lesion_id,image_id,dx"]
    for i in range(24):
        part = "HAM10000_images_part_1" if i % 2 else "HAM10000_images_part_2"
        _img(root / part / f"ISIC_{i:07d}.jpg", i)
        lines.append(f"HAM_{i // 2:07d},ISIC_{i:07d},{('nv', 'mel', 'bkl')[(i // 2) % 3]}")
    (root / "HAM10000_metadata.csv").write_text("\n".join(lines) + "\n")
    csv = CsvParams(file="HAM10000_metadata.csv", image_column="image_id", label_column="dx",
                    group_column="lesion_id")
    return DataParams(source="csv", path=str(root), csv=csv)


def test_ham10000_ids_found_by_stem_and_lesions_grouped(tmp_path: Path) -> None:
    data = ham10000(tmp_path / "ham")
    report, rows = _csv(data, tmp_path)
    assert report["classes"] == {"bkl": 8, "mel": 8, "nv": 8}
    assert rows["HAM10000_images_part_1/ISIC_0000001.jpg"].group == "HAM_0000000"
    assert report["csv"]["unlisted_files"]["count"] == 0
    params = parse_params({"data": data.model_dump(), "split": {"val_fraction": 0.25,
                                                                "test_fraction": 0.25}})
    _, split_report = split_dataset(tmp_path / "raw", params, tmp_path / "split")
    assert split_report["group_column"] == {"images_with_group": 24, "groups": 12}
    split_of = {r.path: r.split for r in read_manifest(tmp_path / "split" / "manifest.csv")}
    groups = read_groups(tmp_path / "split" / "groups.csv")
    for g in set(groups.values()):
        assert len({split_of[p] for p, gg in groups.items() if gg == g}) == 1


def test_duplicate_and_conflicting_rows_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "d"
    lines = ["path,label"]
    for i in range(8):
        _img(root / "img" / f"{i}.png", i)
        lines.append(f"img/{i}.png,{'ab'[i % 2]}")
    lines += ["img/0.png,a", "img/1.png,a", "img/1.png,b"]  # a duplicate, a conflict
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    data = DataParams(source="csv", path=str(root),
                      csv=CsvParams(image_column="path", label_column="label"))
    report, rows = _csv(data, tmp_path)
    assert report["csv"]["duplicate_rows"] == 1
    conflict = report["csv"]["label_conflicts"]
    assert conflict["count"] == 1 and conflict["examples"][0].startswith("img/1.png: line 3 'b'")
    assert "img/1.png" not in rows and report["n_images"] == 7


def test_split_column_tsv_and_multilabel_refusal(tmp_path: Path) -> None:
    root = tmp_path / "s"
    lines = ["file\tfinding\tfold"]
    for i in range(12):
        _img(root / f"{i}.png", i)
        lines.append(f"{i}.png\t{'xy'[i % 2]}\t{('Training', 'Testing')[i // 8]}")
    (root / "labels.tsv").write_text("\n".join(lines) + "\n")
    csv = CsvParams(file="labels.tsv", image_column="file", label_column="finding",
                    split_column="fold")
    report, rows = _csv(DataParams(source="csv", path=str(root), csv=csv), tmp_path)
    assert report["splits"] == {"train": {"x": 4, "y": 4}, "test": {"x": 2, "y": 2}}
    assert rows["9.png"].split == "test"
    (root / "labels.tsv").write_text("file\tfinding\n0.png\tx|y\n1.png\tx\n")
    msg = _error(DataParams(source="csv", path=str(root), csv=csv.model_copy(
        update={"split_column": None})), tmp_path)
    assert "multi-label data is not supported" in msg and "'x|y'" in msg


def test_csv_errors_name_the_fix(tmp_path: Path) -> None:
    root = tmp_path / "e"
    _img(root / "a.png", 1)
    (root / "labels.csv").write_text("image,diagnosis\na.png,x\n")
    data = DataParams(source="csv", path=str(root))
    msg = _error(data, tmp_path)
    assert "no column 'label'" in msg and "data.csv.label_column" in msg
    missing = data.model_copy(update={"csv": CsvParams(file="nope.csv")})
    assert "label file" in _error(missing, tmp_path)
    (root / "labels.csv").write_text("image,label\na.png,x\nb.png,y\n")
    assert "fewer than 2 classes" in _error(data, tmp_path)
    (root / "labels.csv").write_text("image,label,fold\na.png,x,holdout\n")
    bad_split = data.model_copy(update={"csv": CsvParams(split_column="fold")})
    assert "split 'holdout' is not train/val/test" in _error(bad_split, tmp_path)
