"""The bad-input corpus (tests/data/bad/make_corpus.py) through the prepare stage's folder ingest:
every file ends converted, excluded or ignored with its documented reason, and every broken
dataset stops with its one-line error."""

from __future__ import annotations

import errno
import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from medclass.config import DataParams, SplitParams, parse_params
from medclass.data.raw_manifest import read_raw_manifest
from medclass.data.sources import prepare_raw
from medclass.data.split import build_manifest, read_classes
from medclass.errors import MedclassError
from medclass.stages import prepare

_SPEC = importlib.util.spec_from_file_location(
    "medclass_bad_corpus", Path(__file__).parent / "bad" / "make_corpus.py")
assert _SPEC is not None and _SPEC.loader is not None
corpus_mod = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = corpus_mod  # dataclasses resolve their module through sys.modules
_SPEC.loader.exec_module(corpus_mod)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("bad") / "corpus"
    return root, corpus_mod.make_corpus(root)


@pytest.fixture(scope="module")
def ingested(corpus: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory):
    root, _ = corpus
    out = tmp_path_factory.mktemp("raw") / "raw"
    report = prepare_raw(DataParams(source="folder", path=str(root / "dataset")), 0, out)
    return out, report


def _per_file(cases: dict, outcome: str) -> dict:
    prefix = f"{corpus_mod.DATASET}/"
    return {k.removeprefix(prefix): v for k, v in cases.items()
            if k.startswith(prefix) and v.outcome == outcome}


def test_corpus_is_small_and_bomb_is_header_only(corpus: tuple[Path, dict]) -> None:
    root, cases = corpus
    sizes = [p.lstat().st_size for p in root.rglob("*")]
    assert max(sizes) < 20_000
    bomb = root / "dataset" / "normal" / "bomb.png"
    assert bomb.stat().st_size < 200
    with pytest.raises(Image.DecompressionBombError):  # the header really claims 20000^2 px
        Image.open(bomb)
    assert {"excluded", "ignored", "converted", "error"} == {c.outcome for c in cases.values()}


def test_excluded_files_are_listed_with_reason(corpus, ingested) -> None:
    _, cases = corpus
    _, report = ingested
    expected = _per_file(cases, "excluded")
    got = {e["path"]: e["reason"] for e in report["excluded"]}
    assert set(got) == set(expected)
    for path, exp in expected.items():
        assert exp.reason in got[path], path
        assert "\n" not in got[path]
    assert report["n_excluded"] == len(expected)


def test_ignored_entries_are_listed_with_reason(corpus, ingested) -> None:
    _, cases = corpus
    _, report = ingested
    expected = _per_file(cases, "ignored")
    got = {e["path"]: e["reason"] for e in report["ignored"]}
    assert set(got) == set(expected)
    for path, exp in expected.items():
        assert exp.reason in got[path], path
    assert report["n_ignored"] == len(expected)


def test_converted_files_have_documented_mode_size_and_name(corpus, ingested) -> None:
    _, cases = corpus
    out, report = ingested
    expected = _per_file(cases, "converted")
    rows = {r.path: r for r in read_raw_manifest(out / "manifest.csv")}
    assert sorted(rows) == sorted(e.output for e in expected.values())
    assert not list(out.rglob("*.png"))  # a user's tree is read in place, never copied
    for path, exp in expected.items():
        row = rows[exp.output]
        assert (row.mode, (row.width, row.height)) == (exp.mode, exp.size), path
    assert report["n_images"] == len(expected)
    assert report["classes"] == {"lesion": 3, "normal": len(expected) - 3}
    assert report["modes"] == dict(Counter(e.source_mode for e in expected.values()))
    json.dumps(report)  # the report (non-ASCII paths included) is plain JSON


def test_exif_rotation_is_applied(corpus, ingested) -> None:
    root, _ = corpus
    out, _ = ingested
    with Image.open(root / "dataset" / "normal" / "exif_rotated.jpg") as src:
        assert src.size == (16, 8)  # stored landscape, displayed portrait
    row = next(r for r in read_raw_manifest(out / "manifest.csv")
               if r.path == "normal/exif_rotated.jpg")
    assert (row.width, row.height) == (8, 16)


@pytest.mark.parametrize("case", ["empty_class", "unreadable_class", "single_class",
                                  "one_image"])
def test_broken_dataset_stops_with_one_line(corpus, tmp_path: Path, case: str) -> None:
    root, cases = corpus
    exp = cases[case]
    data = DataParams(source="folder", path=str(root / case))
    out = tmp_path / "raw"
    with pytest.raises(MedclassError) as err:
        prepare_raw(data, 0, out)
        assert exp.stage == "split", "prepare should have stopped"
        items = [(r.path, r.label, r.class_name, r.split)
                 for r in read_raw_manifest(out / "manifest.csv")]
        build_manifest(items, SplitParams(), 0, read_classes(out))  # the split stage's step
    msg = str(err.value)
    assert exp.reason in msg
    assert "\n" not in msg
    assert (exp.stage == "split") == out.exists()  # a failed prepare writes no data/raw


def test_prepare_stage_writes_report_when_a_class_has_no_readable_image(
        corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-line error points at metrics/data_report.json: it must say why files went."""
    root, cases = corpus
    params = parse_params({"data": {"source": "folder", "path": str(root / "unreadable_class")}})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MedclassError, match=cases["unreadable_class"].reason):
        prepare.main(params)
    report = json.loads((tmp_path / "metrics" / "data_report.json").read_text())
    reasons = {e["path"]: e["reason"] for e in report["excluded"]}
    assert reasons == {"broken/empty.png": "empty file (0 bytes)",
                       "broken/text.png": "not a recognised image format"}
    assert report["classes"] == {"broken": 0, "normal": 3}
    assert not (tmp_path / "data" / "raw").exists()


def test_markdown_table_lists_every_case(corpus) -> None:
    _, cases = corpus
    table = corpus_mod.markdown_table(cases)
    assert table.count("\n") == len(cases) + 2
    assert ("| `dataset/normal/one_pixel.png` | excluded: too small (1x1 px; need at least "
            "4x4) |") in table


def test_unreadable_file_is_excluded_as_unreadable_not_corrupt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No read permission (simulated: the tests run as root) is not a corrupt image."""
    for cls in ("a", "b"):
        (tmp_path / "src" / cls).mkdir(parents=True)
        for name in ("1.png", "locked.png"):
            Image.new("L", (8, 8), 90).save(tmp_path / "src" / cls / name)
    real_open = Image.open

    def guarded(fp: str | Path, *args: object, **kw: object) -> Image.Image:
        if Path(fp).name == "locked.png":
            raise PermissionError(errno.EACCES, "Permission denied", str(fp))
        return real_open(fp, *args, **kw)

    monkeypatch.setattr(Image, "open", guarded)
    report = prepare_raw(DataParams(source="folder", path=str(tmp_path / "src")), 0,
                         tmp_path / "raw")
    assert {e["path"]: e["reason"] for e in report["excluded"]} == {
        "a/locked.png": "cannot read file (Permission denied)",
        "b/locked.png": "cannot read file (Permission denied)",
    }
