"""Tests for medclass.data.sources.prepare_raw (synthetic, folder and npz sources): the
validated manifest it writes, generated images under ``images/``, and no copies of a user's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medclass.config import DataParams, SyntheticParams
from medclass.data.raw_manifest import read_raw_manifest, source_root
from medclass.data.sources import prepare_raw, safe_class_name
from medclass.errors import MedclassError

BREASTMNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "breastmnist.npz"


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _manifest(out: Path) -> dict[str, object]:
    return {r.path: r for r in read_raw_manifest(out / "manifest.csv")}


def _error(data: DataParams, out: Path) -> str:
    with pytest.raises(MedclassError) as info:
        prepare_raw(data, 0, out)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def _gray(path: Path, value: int = 120, size: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8), "L").save(path)


# ---------------------------------------------------------------- synthetic


def _synthetic(**kw: object) -> DataParams:
    syn = SyntheticParams(**{"images_per_class": 4, "size": 16, **kw})
    return DataParams(source="synthetic", synthetic=syn)


def test_synthetic_layout_report_and_determinism(tmp_path: Path) -> None:
    data = _synthetic(classes=["normal", "nodule", "odd"], imbalance=2.0)
    report = prepare_raw(data, 5, tmp_path / "a")
    prepare_raw(data, 5, tmp_path / "b")
    prepare_raw(data, 6, tmp_path / "c")
    a, b, c = _tree(tmp_path / "a"), _tree(tmp_path / "b"), _tree(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys() and a != c
    assert json.loads(a["classes.json"]) == {"classes": ["normal", "nodule", "odd"]}
    assert {r.split for r in _manifest(tmp_path / "a").values()} == {""}
    assert source_root(tmp_path / "a") == tmp_path / "a" / "images"
    assert report["classes"] == {"normal": 4, "nodule": 3, "odd": 3}
    assert report["source"] == "synthetic" and report["n_images"] == 10
    assert report["n_classes"] == 3 and report["modes"] == {"L": 10}
    assert report["n_excluded"] == report["n_ignored"] == 0
    assert "images/normal/normal_00003.png" in a and "images/odd/odd_00002.png" in a
    rows = _manifest(tmp_path / "a")
    assert sorted(rows) == sorted(k.removeprefix("images/") for k in a if k.endswith(".png"))
    row = rows["nodule/nodule_00000.png"]
    assert (row.label, row.class_name, row.width, row.height, row.mode) == (1, "nodule", 16, 16,
                                                                            "L")
    assert len(row.phash) == 64 and len(row.file_sha256) == 64
    with Image.open(tmp_path / "a" / "images" / "nodule" / "nodule_00000.png") as img:
        assert img.mode == "L" and img.size == (16, 16)


def test_class_names_sanitised(tmp_path: Path) -> None:
    assert safe_class_name("../evil") == "_evil"
    assert safe_class_name("a/b\\c") == "a_b_c"
    assert safe_class_name(" x ") == "x"
    for bad in ("..", ".", "  "):
        with pytest.raises(MedclassError):
            safe_class_name(bad)
    report = prepare_raw(_synthetic(classes=["../up", "a/b"]), 0, tmp_path / "out")
    assert report["classes"] == {"_up": 4, "a_b": 4}
    images = tmp_path / "out" / "images"
    assert sorted(p.name for p in images.iterdir() if p.is_dir()) == ["_up", "a_b"]
    assert not (tmp_path / "up").exists()
    msg = _error(_synthetic(classes=["a/b", "a\\b"]), tmp_path / "clash")
    assert "clash" in msg


# ---------------------------------------------------------------- folder


def _folder(path: Path, **kw: object) -> DataParams:
    return DataParams(source="folder", path=str(path), **kw)


def _build_tree(root: Path) -> None:
    rng = np.random.default_rng(0)
    _gray(root / "benign" / "a.png", 10)
    _gray(root / "benign" / "a.jpg", 20)  # same stem -> unique output name
    _gray(root / "benign" / "sub dir" / "deep" / "x ray#1.PNG", 30)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB").save(
        root / "benign" / "colour.bmp"
    )
    (root / "benign" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "benign" / ".DS_Store").write_bytes(b"junk")
    (root / "benign" / "notes.txt").write_text("hello")
    _gray(root / "benign" / ".hidden_dir" / "h.png")
    _gray(root / "malignant" / "m1.tif", 200)
    Image.fromarray(np.full((4, 4), 1000, np.uint16)).save(root / "malignant" / "m2.png")
    (root / "malignant" / "Thumbs.db").write_bytes(b"x")
    (root / "malignant" / "empty.png").write_bytes(b"")
    _gray(root / ".git" / "x.png")
    (root / "README.md").write_text("readme")
    os.symlink(root / "benign", root / "benign" / "loop")  # symlink loop must be survived


def test_folder_ingest(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _build_tree(src)
    out = tmp_path / "raw"
    report = prepare_raw(_folder(src), 0, out)
    files = _tree(out)
    assert json.loads(files["classes.json"]) == {"classes": ["benign", "malignant"]}
    assert not [k for k in files if k.endswith((".png", ".jpg", ".bmp", ".tif"))]  # no copies
    assert source_root(out) == src
    rows = _manifest(out)
    assert sorted(rows) == [
        "benign/a.jpg", "benign/a.png", "benign/colour.bmp", "benign/sub dir/deep/x ray#1.PNG",
        "malignant/m1.tif", "malignant/m2.png",
    ]
    assert rows["benign/colour.bmp"].mode == "RGB"
    assert rows["malignant/m2.png"].mode == "L" and rows["malignant/m2.png"].label == 1
    assert (rows["benign/a.png"].width, rows["benign/a.png"].height) == (12, 12)
    assert report["source"] == "folder" and report["layout"] == "classes"
    assert report["splits"] is None and report["root"] == src.as_posix()
    assert report["classes"] == {"benign": 4, "malignant": 2}
    assert report["n_images"] == 6 and report["n_classes"] == 2
    excluded = {e["path"]: e["reason"] for e in report["excluded"]}
    assert set(excluded) == {"benign/broken.jpg", "malignant/empty.png"}
    assert "empty" in excluded["malignant/empty.png"]
    assert report["n_excluded"] == 2
    ignored = {e["path"]: e["reason"] for e in report["ignored"]}
    assert {"benign/.DS_Store", "benign/notes.txt", "benign/.hidden_dir", "benign/loop",
            "malignant/Thumbs.db", ".git", "README.md"} == set(ignored)
    assert report["n_ignored"] == len(ignored)
    assert report["modes"] == {"I;16": 1, "L": 4, "RGB": 1}
    assert not out.with_name(".raw.old").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_folder_class_names_set_label_order(tmp_path: Path) -> None:
    for name in ("b", "a"):
        _gray(tmp_path / "src" / name / "1.png")
    prepare_raw(_folder(tmp_path / "src", class_names=["b", "a"]), 0, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "classes.json").read_text()) == {"classes": ["b", "a"]}
    msg = _error(_folder(tmp_path / "src", class_names=["a", "c"]), tmp_path / "out2")
    assert "class_names" in msg


def test_folder_errors(tmp_path: Path) -> None:
    assert "does not exist" in _error(_folder(tmp_path / "missing"), tmp_path / "o")
    (tmp_path / "file").write_text("x")
    assert "not a folder" in _error(_folder(tmp_path / "file"), tmp_path / "o")
    _gray(tmp_path / "one" / "only" / "1.png")
    assert "at least 2" in _error(_folder(tmp_path / "one"), tmp_path / "o")
    _gray(tmp_path / "two" / "good" / "1.png")
    (tmp_path / "two" / "bad").mkdir()
    (tmp_path / "two" / "bad" / "broken.png").write_bytes(b"nope")
    (tmp_path / "two" / "bad" / ".hidden.png").write_bytes(b"nope")
    msg = _error(_folder(tmp_path / "two"), tmp_path / "o")
    assert msg == "class 'bad' has no readable images; add images or remove the class"
    assert not (tmp_path / "o").exists()


def test_failed_prepare_leaves_previous_output(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    prepare_raw(_synthetic(), 1, out)
    before = _tree(out)
    _gray(tmp_path / "src" / "good" / "1.png")
    (tmp_path / "src" / "empty").mkdir()
    _error(_folder(tmp_path / "src"), out)
    _error(DataParams(source="npz", path=str(tmp_path / "none.npz")), out)
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "src"]


# ---------------------------------------------------------------- npz


def _fake_npz(path: Path, rgb: bool = False, **override: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", 9), ("val", 4), ("test", 5)):
        shape = (n, 6, 7, 3) if rgb else (n, 6, 7)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 3).reshape(n, 1).astype(np.uint8)
    arrays.update(override)
    np.savez(path, **arrays)


@pytest.mark.parametrize("rgb", [False, True])
def test_npz_round_trip_with_predefined_split(tmp_path: Path, rgb: bool) -> None:
    npz = tmp_path / "tiny.npz"
    _fake_npz(npz, rgb=rgb)
    out = tmp_path / "raw"
    report = prepare_raw(DataParams(source="npz", path=str(npz)), 0, out)
    assert json.loads((out / "classes.json").read_text()) == {
        "classes": ["class_0", "class_1", "class_2"]
    }
    assert report["source"] == "npz" and report["n_images"] == 18
    assert report["classes"] == {"class_0": 7, "class_1": 6, "class_2": 5}
    assert report["modes"] == {"RGB" if rgb else "L": 18}
    rows = list(_manifest(out).values())
    assert [r.split for r in rows].count("val") == 4
    assert {r.split for r in rows} == {"train", "val", "test"}
    assert {r.path for r in rows} == {
        p.relative_to(out / "images").as_posix() for p in out.rglob("*.png")
    }
    with np.load(npz) as src:
        for r in rows:
            split, index = Path(r.path).stem.split("_")
            assert r.split == split
            label = int(src[f"{split}_labels"][int(index), 0])
            assert r.path.startswith(f"class_{label}/") and r.label == label
            with Image.open(out / "images" / r.path) as img:
                np.testing.assert_array_equal(np.asarray(img), src[f"{split}_images"][int(index)])


def test_npz_class_names(tmp_path: Path) -> None:
    npz = tmp_path / "tiny.npz"
    _fake_npz(npz)
    data = DataParams(source="npz", path=str(npz), class_names=["a", "b", "c"])
    assert prepare_raw(data, 0, tmp_path / "raw")["classes"] == {"a": 7, "b": 6, "c": 5}
    bad = DataParams(source="npz", path=str(npz), class_names=["a", "b"])
    assert "3 distinct labels" in _error(bad, tmp_path / "raw2")


def test_npz_errors(tmp_path: Path) -> None:
    def err(name: str, **override: np.ndarray) -> str:
        path = tmp_path / f"{name}.npz"
        _fake_npz(path, **override)
        return _error(DataParams(source="npz", path=str(path)), tmp_path / "o")

    assert "not found" in _error(DataParams(source="npz", path=str(tmp_path / "x.npz")),
                                 tmp_path / "o")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert "cannot read" in _error(DataParams(source="npz", path=str(tmp_path / "junk.npz")),
                                   tmp_path / "o")
    np.savez(tmp_path / "partial.npz", train_images=np.zeros((1, 2, 2), np.uint8))
    assert "lacks" in _error(DataParams(source="npz", path=str(tmp_path / "partial.npz")),
                             tmp_path / "o")
    assert "(N,1)" in err("multilabel", train_labels=np.zeros((9, 2), np.uint8))
    assert "shape" in err("flat", val_images=np.zeros((4, 42), np.uint8))
    assert "labels" in err("count", test_labels=np.zeros((3, 1), np.uint8))
    assert "uint8" in err("dtype", train_images=np.zeros((9, 6, 7), np.float32))
    one = {f"{s}_labels": np.zeros((n, 1), np.uint8) for s, n in (("train", 9), ("val", 4),
                                                                   ("test", 5))}
    assert "distinct label" in err("oneclass", **one)
    assert not (tmp_path / "o").exists()


def test_real_breastmnist(tmp_path: Path) -> None:
    if not BREASTMNIST.is_file():
        pytest.skip(f"{BREASTMNIST} not present")
    out = tmp_path / "raw"
    report = prepare_raw(DataParams(source="npz", path=str(BREASTMNIST)), 0, out)
    with np.load(BREASTMNIST) as src:
        sizes = {s: len(src[f"{s}_labels"]) for s in ("train", "val", "test")}
    assert report["n_images"] == sum(sizes.values())
    assert report["n_classes"] == 2 and report["n_excluded"] == 0
    splits = [r.split for r in _manifest(out).values()]
    assert {s: splits.count(s) for s in sizes} == sizes
