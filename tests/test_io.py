"""Atomic writes and safe checkpoint loading."""

import os
import pickle

import pytest
import torch

from medclass.errors import MedclassError
from medclass.io import atomic_dir, atomic_path, load_checkpoint, save_checkpoint, write_json


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("2")
        raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_checkpoint_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(3.0)}, "meta": {"classes": ["a", "b"]}}
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert loaded["meta"] == state["meta"]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_equal_checkpoints_are_equal_bytes(tmp_path):
    """DVC hashes outputs: an unchanged model must give an unchanged file (no temp name in it)."""
    state = {"model": {"w": torch.arange(4.0)}, "meta": {"epoch": 1}}
    save_checkpoint(tmp_path / "a.pt", state)
    first = (tmp_path / "a.pt").read_bytes()
    save_checkpoint(tmp_path / "a.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == first
    save_checkpoint(tmp_path / "b.pt", state)  # nor the file's own name
    assert (tmp_path / "b.pt").read_bytes() == first


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"model": _Evil()}, fh)
    with pytest.raises(MedclassError, match="cannot load checkpoint"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(MedclassError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")


def test_atomic_write_has_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {})
    finally:
        os.umask(mask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644


def test_atomic_dir_has_normal_permissions(tmp_path):
    from medclass.io import atomic_dir

    mask = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "out") as d:
            (d / "a.txt").write_text("x")
    finally:
        os.umask(mask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
