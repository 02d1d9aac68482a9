"""``medclass data check``: the preflight on small generated trees, through the CLI."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medclass.cli import app
from medclass.data.group_hint import suggest_group_pattern
from medclass.data.preflight import check_folder

PERSON = r"(person\d+)_"


def _img(path: Path, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(path.name)).integers(0, 255, (32, 32), dtype=np.uint8)
    Image.fromarray(pixels, "L").save(path, fmt)


def _pneumonia_tree(root: Path) -> dict[str, set[str]]:
    """train/ and test/, 3 images per person; person8 is in both splits. Returns the patients'
    files (relative paths) by patient."""
    patients: dict[str, set[str]] = {}
    n = 0
    for split, people in (("train", range(1, 9)), ("test", range(8, 12))):
        for pid in people:
            for k in range(3):
                n += 1
                cls = "PNEUMONIA" if pid % 2 else "NORMAL"
                rel = f"{split}/{cls}/person{pid}_{('virus', 'bacteria')[k % 2]}_{n}.png"
                _img(root / rel)
                patients.setdefault(f"person{pid}", set()).add(rel)
    return patients


def _check(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["data", "check", *args], env={"COLUMNS": "250"})
    return result.exit_code, result.output


def _last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def test_good_split_tree_passes_and_suggests_the_patient_pattern(tmp_path):
    from medclass.data.leakage import pattern_groups  # what the split stage runs

    patients = _pneumonia_tree(tmp_path)
    code, out = _check(str(tmp_path))
    assert code == 0, out
    assert _last_line(out).startswith("ok: 36 usable images in 2 classes")
    assert f"split.group_pattern: '{PERSON}'" in out
    assert "1 group(s) (6 images) span split folders" in out
    report = check_folder(tmp_path)
    assert report.layout == "splits"
    assert report.counts == {"train": {"NORMAL": 12, "PNEUMONIA": 12},
                             "test": {"NORMAL": 6, "PNEUMONIA": 6}}
    paths = sorted(p for files in patients.values() for p in files)
    ids, counts = pattern_groups(paths, report.group_hint.pattern)
    found = {frozenset(p for p, g in zip(paths, ids, strict=True) if g == gid)
             for gid in set(ids.tolist())}
    assert found == {frozenset(files) for files in patients.values()}
    assert counts == {"matched": 36, "unmatched": 0, "groups": 11}


@pytest.mark.parametrize(("names", "pattern"), [
    ([f"IM-{p:04d}-{k:04d}" for p in range(10) for k in range(2)], r"(IM-\d+)-"),
    ([f"{p:08d}_{k:03d}" for p in range(10) for k in range(3)], r"(?:^|/)(\d+)_[^/]*$"),
    ([f"ISIC_{i:07d}" for i in range(30)], None),  # one image per id: nothing to group
    ([f"batch{b}_{i}" for b in range(2) for i in range(20)], None),  # 2 batches, not patients
])
def test_group_pattern_suggestion(names, pattern):
    paths = [f"1_effusion/{n}.png" for n in names]  # a class folder that starts like an id
    hint = suggest_group_pattern(paths)
    assert (hint and hint.pattern) == pattern
    if hint is not None:
        groups = {re.search(hint.pattern, p).group(1) for p in paths}
        assert hint.matched == len(paths) and hint.groups == len(groups) == 10


def test_broken_link_stops_with_the_dvc_explanation(tmp_path):
    _pneumonia_tree(tmp_path)
    os.symlink(tmp_path / "gone.png", tmp_path / "train/NORMAL/person99_virus_1.png")
    (tmp_path / "train/NORMAL/.thumbs").mkdir()
    os.symlink("/nonexistent", tmp_path / "train/NORMAL/.thumbs/t.png")  # DVC hashes it too
    code, out = _check(str(tmp_path))
    assert code == 2
    assert "broken symbolic links: 2" in out
    last = _last_line(out)
    assert last.startswith("error: broken symbolic links: train/NORMAL/.thumbs/t.png (and 1 more)")
    assert "DVC fails while hashing data.path ([Errno 2] No such file or directory)" in last
    assert "remove each link or replace it by the file it pointed to" in last


def test_mixed_level_stops_with_the_one_line_layout_error(tmp_path):
    _img(tmp_path / "train/NORMAL/a.png")
    _img(tmp_path / "train/PNEUMONIA/b.png")
    _img(tmp_path / "NORMAL/c.png")
    code, out = _check(str(tmp_path))
    assert code == 2
    assert out.strip().splitlines()[-1].startswith("error: ") and "mixes split folders" in out
    assert "usable images per class" not in out and len(out.strip().splitlines()) == 2
    code, out = _check(str(tmp_path), "--layout", "classes")  # read as two classes instead
    assert code == 0 and "class folders at the top" in out


def test_empty_class_folder_stops(tmp_path):
    _img(tmp_path / "a/1.png")
    _img(tmp_path / "b/2.png")
    (tmp_path / "c").mkdir()
    code, out = _check(str(tmp_path))
    assert code == 2
    assert _last_line(out).startswith("error: class folders with no images: c; add images")


def test_class_with_only_broken_files_stops(tmp_path):
    _img(tmp_path / "a/1.png")
    (tmp_path / "b").mkdir()
    (tmp_path / "b/2.png").write_text("not an image")
    code, out = _check(str(tmp_path))
    assert code == 2
    assert _last_line(out).startswith("error: classes with no readable images: b; ")
    assert "b/2.png: not a recognised image format" in out


def test_single_class_stops(tmp_path):
    _img(tmp_path / "only/1.png")
    code, out = _check(str(tmp_path))
    assert code == 2 and _last_line(out).startswith("error: fewer than 2 classes: only; ")


def test_empty_file_is_listed_but_does_not_stop(tmp_path):
    _pneumonia_tree(tmp_path)
    (tmp_path / "train/NORMAL/blank.png").write_bytes(b"")
    code, out = _check(str(tmp_path))
    assert code == 0, out
    assert "empty (0-byte) files: 1  (train/NORMAL/blank.png: empty file (0 bytes))" in out
    assert "1 warning(s) above" in _last_line(out)


def _truncated_png(path: Path) -> None:
    buf = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    Image.fromarray(pixels, "L").save(buf, "PNG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # header intact, pixels cut


def test_decode_finds_what_the_header_check_cannot(tmp_path):
    _pneumonia_tree(tmp_path)
    _truncated_png(tmp_path / "train/NORMAL/cut.png")
    assert check_folder(tmp_path).counts["train"]["NORMAL"] == 13
    report = check_folder(tmp_path, decode=True)
    assert report.counts["train"]["NORMAL"] == 12
    assert report.issues["corrupt"].examples[0].startswith("train/NORMAL/cut.png: corrupt or")


def test_decoded_counts_match_prepare(tmp_path):
    from medclass.config import DataParams
    from medclass.data.sources import prepare_raw

    root = tmp_path / "images"
    _pneumonia_tree(root)
    _truncated_png(root / "train/NORMAL/cut.png")
    (root / "test/PNEUMONIA/blank.png").write_bytes(b"")
    (root / "train/PNEUMONIA/fake.jpg").write_text("text")
    (root / "train/notes.txt").write_text("x")
    report = check_folder(root, decode=True)
    assert not report.blocking()
    raw = prepare_raw(DataParams(source="folder", path=str(root)), 0, tmp_path / "raw")
    assert report.counts == raw["splits"]
    bad = {e.split(":")[0] for k in ("corrupt", "empty_file", "not_image")
           for e in report.issues[k].examples}
    assert bad == {e["path"] for e in raw["excluded"]}


def test_csv_source(tmp_path):
    for i in range(4):
        _img(tmp_path / f"img/{i}.png")
    (tmp_path / "labels.csv").write_text("file,dx\nimg/0.png,a\nimg/1.png,a\nimg/2.png,b\n"
                                         "img/3.png,b\nimg/9.png,b\n")
    code, out = _check(str(tmp_path), "--csv", "labels.csv", "--image-column", "file",
                       "--label-column", "dx")
    assert code == 0, out
    assert "CSV rows naming no existing file: 1  (line 6: img/9.png)" in out
    assert _last_line(out).startswith("ok: 4 usable images in 2 classes")
    code, out = _check(str(tmp_path), "--csv", "labels.csv")
    assert code == 2 and "has no column 'image'" in _last_line(out)
