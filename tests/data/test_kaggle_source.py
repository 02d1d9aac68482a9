"""data.source: kaggle through a stand-in kagglehub (no network here): ingest, errors, and that
credentials from the environment never reach an output file, a log line or an error."""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medclass.config import DataParams, KaggleParams, parse_params
from medclass.data.raw_manifest import source_root
from medclass.data.sources import prepare_raw
from medclass.errors import MedclassError
from medclass.stages import prepare

USER = "alice-kaggle-user-7731"
KEY = "0123abcd4567ef89credentialvalue"


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8), "L").save(path)


def _fake_kagglehub(monkeypatch: pytest.MonkeyPatch, cache: Path,
                    error: Exception | None = None) -> list[str]:
    """``kagglehub.dataset_download`` returning a cached tree like the real one:
    ``<cache>/datasets/<owner>/<name>/versions/<N>`` holding ``chest_xray/<class>/...``."""
    calls: list[str] = []

    def dataset_download(handle: str, path: str | None = None, **kw: object) -> str:
        calls.append(handle)
        if error is not None:
            raise error
        owner, name, *rest = handle.split("/")
        root = cache / "datasets" / owner / name / "versions" / (rest[1] if rest else "5")
        _png(root / "chest_xray" / "NORMAL" / "n1.png", 10)
        _png(root / "chest_xray" / "NORMAL" / "n2.jpeg", 20)
        _png(root / "chest_xray" / "PNEUMONIA" / "p1.png", 200)
        (root / "chest_xray" / "PNEUMONIA" / "p2.png").write_bytes(b"truncated")
        (root / "README.md").write_text("dataset card")
        return str(root)

    module = types.ModuleType("kagglehub")
    module.dataset_download = dataset_download
    monkeypatch.setitem(sys.modules, "kagglehub", module)
    return calls


def _data(handle: str = "paultimothymooney/chest-xray-pneumonia/versions/2",
          subdir: str | None = "chest_xray") -> DataParams:
    return DataParams(source="kaggle", kaggle=KaggleParams(handle=handle, subdir=subdir))


def test_download_is_ingested_as_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_kagglehub(monkeypatch, tmp_path / "cache")
    report = prepare_raw(_data(), 0, tmp_path / "raw")
    assert calls == ["paultimothymooney/chest-xray-pneumonia/versions/2"]
    assert report["source"] == "kaggle"
    assert report["kaggle"] == {"handle": calls[0], "version": "2", "subdir": "chest_xray"}
    assert report["classes"] == {"NORMAL": 2, "PNEUMONIA": 1}
    assert [e["path"] for e in report["excluded"]] == ["PNEUMONIA/p2.png"]
    # the download lives outside the repository: kept files are copied byte for byte
    images = tmp_path / "raw" / "images"
    assert sorted(p.relative_to(images).as_posix() for p in images.rglob("*.*")) == [
        "NORMAL/n1.png", "NORMAL/n2.jpeg", "PNEUMONIA/p1.png"]
    download = next((tmp_path / "cache").rglob("n1.png"))
    assert (images / "NORMAL" / "n1.png").read_bytes() == download.read_bytes()
    assert source_root(tmp_path / "raw") == images


def test_unpinned_handle_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               caplog: pytest.LogCaptureFixture) -> None:
    _fake_kagglehub(monkeypatch, tmp_path / "cache")
    with caplog.at_level(logging.WARNING):
        report = prepare_raw(_data("owner/ds"), 0, tmp_path / "raw")
    assert "pin a version" in caplog.text and report["kaggle"]["version"] == "5"


def test_layout_errors_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_kagglehub(monkeypatch, tmp_path / "cache")
    with pytest.raises(MedclassError) as info:
        prepare_raw(_data(subdir=None), 0, tmp_path / "raw")
    assert "has 1 folder(s) at its top level (chest_xray)" in str(info.value)
    assert "set data.kaggle.subdir" in str(info.value)
    with pytest.raises(MedclassError, match="top-level folders: chest_xray"):
        prepare_raw(_data(subdir="images"), 0, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_missing_package_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kagglehub", None)
    with pytest.raises(MedclassError) as info:
        prepare_raw(_data(), 0, tmp_path / "raw")
    assert "\n" not in str(info.value) and "pip install kagglehub" in str(info.value)


def test_download_error_masks_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    _fake_kagglehub(monkeypatch, tmp_path / "cache",
                    error=PermissionError(f"403 Forbidden for key={KEY}\nmore detail"))
    with pytest.raises(MedclassError) as info:
        prepare_raw(_data(), 0, tmp_path / "raw")
    msg = str(info.value)
    assert "\n" not in msg and KEY not in msg and "key=***" in msg
    assert "PermissionError" in msg and "KAGGLE_USERNAME and KAGGLE_KEY" in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_credentials_never_reach_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage_project, caplog, capfd
) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    _fake_kagglehub(monkeypatch, tmp_path / "cache")
    with caplog.at_level(logging.DEBUG):
        root = stage_project("kaggle", {"data": {
            "source": "kaggle",
            "kaggle": {"handle": "owner/chest/versions/3", "subdir": "chest_xray"},
        }}, [prepare])
    report = (root / "metrics" / "data_report.json").read_text()
    assert '"source": "kaggle"' in report
    written = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".png" for p in written)
    for path in written:
        data = path.read_bytes()
        assert KEY.encode() not in data and USER.encode() not in data, path
    out, err = capfd.readouterr()
    for text in (out, err, caplog.text):
        assert KEY not in text and USER not in text


def test_params_validation() -> None:
    def err(data: dict) -> str:
        with pytest.raises(MedclassError) as info:
            parse_params({"data": data})
        assert "\n" not in str(info.value)
        return str(info.value)

    assert "kaggle.handle is required with source: kaggle" in err({"source": "kaggle"})
    assert "is not a Kaggle dataset handle" in err(
        {"source": "kaggle", "kaggle": {"handle": "https://kaggle.com/x"}})
    assert "is not a Kaggle dataset handle" in err({"kaggle": {"handle": "../etc/versions/1"}})
    assert "relative path inside its folder" in err({"kaggle": {"handle": "a/b",
                                                                "subdir": "../up"}})
    ok = parse_params({"data": {"source": "kaggle",
                                "kaggle": {"handle": "o-wner/data.set_1/versions/12"}}})
    assert ok.data.kaggle.handle == "o-wner/data.set_1/versions/12"
    assert parse_params({}).data.kaggle == KaggleParams()


def test_pre_split_download_keeps_its_split(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The usual Kaggle layout: the download's top folder holds train/ and test/ (point at it
    with kaggle.subdir); their class folders are the classes, their names the split."""
    root = tmp_path / "cache" / "datasets" / "o" / "xray" / "versions" / "1"
    for split, names in (("train", ("a", "b", "c")), ("test", ("d",))):
        for cls, value in (("NORMAL", 10), ("PNEUMONIA", 200)):
            for name in names:
                _png(root / "chest_xray" / split / cls / f"{name}.png", value + ord(name) - 90)
    module = types.ModuleType("kagglehub")
    module.dataset_download = lambda handle, **kw: str(root)
    monkeypatch.setitem(sys.modules, "kagglehub", module)
    report = prepare_raw(_data("o/xray/versions/1"), 0, tmp_path / "raw")
    assert report["layout"] == "splits" and set(report["classes"]) == {"NORMAL", "PNEUMONIA"}
    assert report["splits"] == {"train": {"NORMAL": 3, "PNEUMONIA": 3},
                                "test": {"NORMAL": 1, "PNEUMONIA": 1}}
    assert (tmp_path / "raw" / "images" / "test" / "NORMAL" / "d.png").is_file()
