"""data.source: medmnist: file resolution, the offline error, the optional download, config."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from medclass.config import DataParams, MedMNISTParams, parse_params
from medclass.data import medmnist_source
from medclass.data.medmnist_source import ZENODO, expected_file, official_filename
from medclass.data.raw_manifest import read_raw_manifest
from medclass.data.sources import prepare_raw
from medclass.errors import MedclassError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def _official_npz(path: Path, n_classes: int = 2, side: int = 28) -> Path:
    """A tiny file with the official MedMNIST keys and layout (N,H,W) uint8, (N,1) labels."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 3), ("test", 4)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % n_classes).reshape(n, 1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def _data(path: Path, name: str = "pneumoniamnist", size: int = 28, **kw: object) -> DataParams:
    return DataParams(source="medmnist", path=str(path),
                      medmnist=MedMNISTParams(name=name, size=size), **kw)


@pytest.fixture
def no_medmnist(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import medmnist`` fail, whether or not the package is installed."""
    monkeypatch.setitem(sys.modules, "medmnist", None)


def _fake_medmnist(monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> list[dict]:
    """Stand-in for the optional package (no network here): INFO + a dataset class whose
    ``download=True`` writes the official file name into ``root``, as the real one does."""
    calls: list[dict] = []

    class PneumoniaMNIST:
        def __init__(self, split: str, download: bool, root: str, size: int) -> None:
            calls.append({"split": split, "download": download, "root": root, "size": size})
            if fail:
                raise RuntimeError("Something went wrong when downloading!\nsecond line")
            _official_npz(Path(root) / official_filename("pneumoniamnist", size), side=size)

    module = types.ModuleType("medmnist")
    module.INFO = {"pneumoniamnist": {"python_class": "PneumoniaMNIST",
                                      "label": {"1": "other", "0": "names"}}}
    module.PneumoniaMNIST = PneumoniaMNIST
    monkeypatch.setitem(sys.modules, "medmnist", module)
    monkeypatch.setattr(medmnist_source, "online", lambda *a, **k: True)
    return calls


def test_expected_file_uses_official_names(tmp_path: Path) -> None:
    assert expected_file(_data(tmp_path)) == tmp_path / "pneumoniamnist.npz"
    assert expected_file(_data(tmp_path, "breastmnist", 128)) == tmp_path / "breastmnist_128.npz"
    mine = tmp_path / "my_copy.NPZ"
    assert expected_file(_data(mine, size=64)) == mine


def test_local_file_is_read_by_the_npz_ingest(tmp_path: Path, no_medmnist: None) -> None:
    _official_npz(tmp_path / "ext" / "pneumoniamnist.npz")
    out = tmp_path / "raw"
    report = prepare_raw(_data(tmp_path / "ext"), 0, out)
    assert report["source"] == "medmnist" and report["n_images"] == 13
    assert report["medmnist"] == {"name": "pneumoniamnist", "size": 28,
                                  "file": str(tmp_path / "ext" / "pneumoniamnist.npz")}
    # the official label names without the package installed
    assert json.loads((out / "classes.json").read_text()) == {"classes": ["normal", "pneumonia"]}
    splits = [r.split for r in read_raw_manifest(out / "manifest.csv")]
    assert {s: splits.count(s) for s in ("train", "val", "test")} == {
        "train": 6, "val": 3, "test": 4}
    named = _data(tmp_path / "ext", class_names=["healthy", "sick"])
    assert prepare_raw(named, 0, tmp_path / "raw2")["classes"] == {"healthy": 7, "sick": 6}


def test_explicit_npz_path_and_size_file_name(tmp_path: Path, no_medmnist: None) -> None:
    _official_npz(tmp_path / "breastmnist_64.npz", side=64)
    report = prepare_raw(_data(tmp_path, "breastmnist", 64), 0, tmp_path / "raw")
    assert report["medmnist"]["file"].endswith("breastmnist_64.npz")
    explicit = _official_npz(tmp_path / "elsewhere" / "copy.npz")
    assert prepare_raw(_data(explicit), 0, tmp_path / "raw2")["n_images"] == 13


def test_missing_file_offline_names_the_exact_file(tmp_path: Path, no_medmnist: None) -> None:
    with pytest.raises(MedclassError) as info:
        prepare_raw(_data(tmp_path / "ext", "bloodmnist", 224), 0, tmp_path / "raw")
    msg = str(info.value)
    assert "\n" not in msg
    assert f"'{tmp_path / 'ext' / 'bloodmnist_224.npz'}' not found" in msg
    assert "download bloodmnist_224.npz from https://zenodo.org/records/10519652" in msg
    assert "pip install medmnist" in msg and "not installed" in msg
    assert not (tmp_path / "raw").exists() and not (tmp_path / "ext").exists()


def test_package_present_but_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_medmnist(monkeypatch)
    monkeypatch.setattr(medmnist_source, "online", lambda *a, **k: False)
    with pytest.raises(MedclassError, match="cannot be reached") as info:
        prepare_raw(_data(tmp_path), 0, tmp_path / "raw")
    assert str(tmp_path / "pneumoniamnist.npz") in str(info.value) and ZENODO in str(info.value)
    assert calls == []


def test_download_through_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_medmnist(monkeypatch)
    ext = tmp_path / "ext"
    report = prepare_raw(_data(ext, size=64), 0, tmp_path / "raw")
    assert len(calls) == 1 and calls[0]["download"] and calls[0]["size"] == 64
    assert Path(calls[0]["root"]).parent == ext  # a scratch folder beside the target
    assert sorted(p.name for p in ext.iterdir()) == ["pneumoniamnist_64.npz"]  # scratch gone
    # class names from the static table, in label order (the fake package's INFO is not read)
    assert json.loads((tmp_path / "raw" / "classes.json").read_text()) == {
        "classes": ["normal", "pneumonia"]}
    assert report["classes"] == {"normal": 7, "pneumonia": 6}
    prepare_raw(_data(ext, size=64), 0, tmp_path / "raw2")
    assert len(calls) == 1  # present now: no second download


def test_failed_download_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_medmnist(monkeypatch, fail=True)
    with pytest.raises(MedclassError) as info:
        prepare_raw(_data(tmp_path / "ext"), 0, tmp_path / "raw")
    msg = str(info.value)
    assert "\n" not in msg and "download through medmnist failed" in msg
    assert "pneumoniamnist.npz" in msg and ZENODO in msg
    assert list((tmp_path / "ext").iterdir()) == []


def test_info_labels_must_match_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_medmnist(monkeypatch)
    _official_npz(tmp_path / "pneumoniamnist.npz", n_classes=3)
    with pytest.raises(MedclassError, match="3 distinct labels but MedMNIST pneumoniamnist has 2"):
        prepare_raw(_data(tmp_path), 0, tmp_path / "raw")


def test_params_validation() -> None:
    def err(medmnist: dict) -> str:
        with pytest.raises(MedclassError) as info:
            parse_params({"data": {"source": "medmnist", "medmnist": medmnist}})
        assert "\n" not in str(info.value)
        return str(info.value)

    msg = err({"name": "pneumonia"})
    assert msg.startswith("params.yaml: data.medmnist.name: unknown MedMNIST dataset 'pneumonia'")
    assert "did you mean pneumoniamnist?" in msg and "organsmnist" in msg
    assert "did you mean" not in err({"name": "zzz"})
    assert "size 32 is not an official MedMNIST size; use one of: 28, 64, 128, 224" in err(
        {"size": 32})
    assert "unknown key" in err({"split": "train"})
    params = parse_params({"data": {"source": "medmnist",
                                    "medmnist": {"name": "BreastMNIST", "size": 224}}})
    assert params.data.medmnist == MedMNISTParams(name="breastmnist", size=224)


def test_real_official_breastmnist(tmp_path: Path, no_medmnist: None) -> None:
    official = SHARED / "breastmnist.npz"
    if not official.is_file():
        pytest.skip(f"{official} not present")
    report = prepare_raw(_data(SHARED, "breastmnist"), 0, tmp_path / "raw")
    with np.load(official) as src:
        n = sum(len(src[f"{s}_labels"]) for s in ("train", "val", "test"))
    assert report["n_images"] == n and report["n_classes"] == 2 and report["source"] == "medmnist"


def test_label_table_covers_every_dataset_and_a_wrong_file_is_caught(
    tmp_path: Path, no_medmnist: None
) -> None:
    from medclass.config.data import MEDMNIST_2D_NAMES
    from medclass.data.medmnist_source import LABELS

    assert set(LABELS) == set(MEDMNIST_2D_NAMES)
    assert LABELS["breastmnist"] == ("malignant", "normal, benign")
    assert len(LABELS["bloodmnist"]) == 8
    _official_npz(tmp_path / "octmnist.npz")  # 2 labels, but OCTMNIST has 4 classes
    with pytest.raises(MedclassError, match="has 2 distinct labels but MedMNIST octmnist has 4"):
        prepare_raw(_data(tmp_path, "octmnist"), 0, tmp_path / "raw")


def test_multi_label_file_gets_the_ingest_message_not_a_label_count(
    tmp_path: Path, no_medmnist: None
) -> None:
    arrays = {}
    for split, n in (("train", 6), ("val", 3), ("test", 4)):
        arrays[f"{split}_images"] = np.zeros((n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.eye(14, dtype=np.uint8)[:n]  # chestmnist: 14 columns
    np.savez_compressed(tmp_path / "chestmnist.npz", **arrays)
    with pytest.raises(MedclassError, match="multi-label data is not supported") as info:
        prepare_raw(_data(tmp_path, "chestmnist"), 0, tmp_path / "raw")
    assert "\n" not in str(info.value) and not (tmp_path / "raw").exists()
