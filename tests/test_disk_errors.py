"""Unwritable outputs give one line naming the path and the fix, never a traceback.

The tests run as root, where chmod does not block writes: permissions, read-only filesystems
and full disks are simulated by making the write calls raise the OSError the kernel would
give; "a file where a folder should be" is real.
"""

from __future__ import annotations

import errno
import os
import pathlib
import tempfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from medclass import io
from medclass.config import DataParams, SyntheticParams
from medclass.data.sources import prepare_raw
from medclass.errors import MedclassError
from medclass.io import atomic_dir, atomic_path, save_checkpoint, write_json

NOT_A_FOLDER = "a component of that path is a file, not a folder; move or delete that file"


def _one_line(exc: pytest.ExceptionInfo[MedclassError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_parent_is_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "metrics").write_text("a file, not a folder")
    with pytest.raises(MedclassError) as err:
        write_json(tmp_path / "metrics" / "test.json", {})
    assert _one_line(err) == f"cannot write {tmp_path / 'metrics'}: {NOT_A_FOLDER}"
    with pytest.raises(MedclassError) as err, atomic_dir(tmp_path / "metrics" / "sub" / "out"):
        pass
    assert _one_line(err) == f"cannot write {tmp_path / 'metrics' / 'sub'}: {NOT_A_FOLDER}"
    assert (tmp_path / "metrics").read_text() == "a file, not a folder"


def test_permission_denied_names_the_output(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(prefix: str = "", suffix: str = "", dir: str = "") -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied",
                              os.path.join(dir, f"{prefix}k2x9{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    target = tmp_path / "models" / "calibration.json"
    with pytest.raises(MedclassError) as err:
        write_json(target, {"t": 1.0})
    assert _one_line(err) == (f"cannot write {target}: permission denied; fix the permissions "
                              "of that path (chmod/chown) or run from a writable checkout")


def test_disk_full_during_write_keeps_old_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.json"
    write_json(target, {"old": True})

    def full(self: Path, *args: object, **kw: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", full)
    with pytest.raises(MedclassError) as err:
        write_json(target, {"new": True})
    assert _one_line(err) == (f"cannot write {target}: no space left on the device; free disk "
                              "space and rerun")
    monkeypatch.undo()
    assert target.read_text() == '{\n  "old": true\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_read_only_filesystem_when_replacing_a_folder(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(src: object, dst: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(src), None, str(dst))

    monkeypatch.setattr(io.os, "replace", read_only)
    with pytest.raises(MedclassError) as err, atomic_dir(tmp_path / "split") as tmp:
        (tmp / "manifest.csv").write_text("path\n")
    assert _one_line(err) == (f"cannot write {tmp_path / 'split'}: the filesystem is read-only; "
                              "run from a writable checkout or remount it read-write")
    assert list(tmp_path.iterdir()) == []


def test_other_errors_keep_their_type(tmp_path: Path) -> None:
    """Errors about inputs read inside the block, and non-disk errors, are not relabelled."""
    with pytest.raises(PermissionError), atomic_path(tmp_path / "out" / "a.json"):
        raise PermissionError(errno.EACCES, "Permission denied", "/elsewhere/input.png")
    beside = tmp_path / "out" / "input.png"  # an input next to the output, read in the block
    with pytest.raises(PermissionError), atomic_dir(tmp_path / "out" / "split"):
        raise PermissionError(errno.EACCES, "Permission denied", str(beside))
    with pytest.raises(OSError) as err, atomic_path(tmp_path / "out" / "a.json"):
        raise OSError(errno.EIO, "Input/output error")
    assert not isinstance(err.value, MedclassError) and err.value.errno == errno.EIO


def test_checkpoint_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object, **kw: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(MedclassError) as err:
        save_checkpoint(tmp_path / "model.pt", {"w": 1})
    assert "cannot write" in _one_line(err) and "free disk space" in str(err.value)

    def bug(*args: object, **kw: object) -> None:
        raise RuntimeError("something else")

    monkeypatch.setattr(torch, "save", bug)
    with pytest.raises(RuntimeError, match="something else"):
        save_checkpoint(tmp_path / "model.pt", {"w": 1})


def test_prepare_names_the_output_folder_when_the_disk_fills(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: Image.Image, fp: object, *args: object, **kw: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(fp))

    monkeypatch.setattr(Image.Image, "save", full)
    data = DataParams(synthetic=SyntheticParams(classes=["a", "b"], images_per_class=3, size=16))
    with pytest.raises(MedclassError) as err:
        prepare_raw(data, 0, tmp_path / "raw")
    assert _one_line(err) == (f"cannot write {tmp_path / 'raw'}: no space left on the device; "
                              "free disk space and rerun")
    assert list(tmp_path.iterdir()) == []
