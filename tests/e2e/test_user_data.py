"""End to end, as README's "Your own data" steps: a Kaggle-style ``train/ test/`` chest X-ray
tree versioned with ``dvc add``, trained with real ``dvc repro``, its own test folder reported
as the test split, stored once (hardlinks), and moved through a DVC remote to a fresh clone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from e2e_tools import copy_repo, run
from PIL import Image

pytestmark = pytest.mark.e2e

TREE = "data/external/chest_xray"
PARAMS = {  # tiny training; the data params come from README's command line below
    "model": "simple_cnn_tiny",
    "data": {"image_size": 16},
    "verify": {"models": "selected", "latency_runs": 1},
    "train": {"batch_size": 8, "eval_batch_size": 16, "progress": False},
    "head": {"epochs": 1},
    "finetune": {"epochs": 1, "min_epochs": 1},
    "evaluate": {"batch_size": 16, "bootstrap": 20, "gradcam_per_class": 0, "gallery": 0,
                 "embedding": "none"},
}


def _tree(root: Path) -> dict[str, int]:
    """``train/`` and ``test/``, NORMAL and PNEUMONIA, patient ids in the file names; returns
    the image count per split folder."""
    counts = {"train": 0, "test": 0}
    rng = np.random.default_rng(0)
    for split, patients in (("train", range(12)), ("test", range(100, 106))):
        for p in patients:
            for cls, name, n in (("PNEUMONIA", f"person{p}_virus_{{}}.jpeg", 2),
                                 ("NORMAL", f"IM-{p:04d}-{{}}.jpeg", 2)):
                for k in range(n):
                    arr = rng.integers(0, 256, (40, 40), dtype=np.uint8)
                    arr[:, :20] = 255 if cls == "PNEUMONIA" else 0  # learnable
                    path = root / split / cls / name.format(k)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(arr, "L").convert("RGB").save(path, quality=90)
                    counts[split] += 1
    return counts


def _inodes(*roots: Path) -> dict[int, int]:
    """inode -> size of the files under ``roots`` (a hardlinked file counts once)."""
    seen: dict[int, int] = {}
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for f in files:
                st = os.lstat(os.path.join(dirpath, f))
                seen[st.st_ino] = st.st_size
    return seen


def _unique_bytes(*roots: Path, without: tuple[Path, ...] = ()) -> int:
    skip = _inodes(*without)
    return sum(size for ino, size in _inodes(*roots).items() if ino not in skip)


def test_own_train_test_tree_from_add_to_pull(tmp_path: Path) -> None:
    proj = copy_repo(tmp_path / "proj", PARAMS)
    counts = _tree(proj / TREE)
    run(proj, "dvc", "add", TREE)
    run(proj, "git", "add", "-A")
    run(proj, "git", "commit", "-qm", "data")
    run(proj, "dvc", "exp", "run", "evaluate", "-S", "data.source=folder", "-S",  # as README
        f"data.path={TREE}", "-S", "split.group_pattern='(person\\d+|IM-\\d+)'")

    report = json.loads((proj / "metrics/data_report.json").read_text())
    assert report["layout"] == "splits"
    assert set(report["classes"]) == {"NORMAL", "PNEUMONIA"}  # not "train" vs "test"
    test = json.loads((proj / "metrics/test.json").read_text())
    assert test["n"] == counts["test"]  # the tree's own test folder is the test split
    split_report = json.loads((proj / "metrics/split_report.json").read_text())
    assert split_report["group_pattern"]["unmatched"] == 0

    source = _unique_bytes(proj / TREE)
    cache_npy = _unique_bytes(proj / "data/split/cache")
    # data/ plus the DVC cache, less the cached checkpoints (models/ is not data)
    stored = _unique_bytes(proj / "data", proj / ".dvc/cache", without=(proj / "models",))
    assert stored <= 1.5 * (source + cache_npy), (stored, source, cache_npy)

    remote = tmp_path / "remote"
    run(proj, "dvc", "remote", "add", "-d", "store", str(remote))
    run(proj, "dvc", "push")
    run(proj, "git", "add", "-A")
    run(proj, "git", "commit", "-qm", "run")
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(proj), str(clone))
    run(clone, "dvc", "pull", "--with-deps", "evaluate")  # the stages this test ran
    assert "up to date" in run(clone, "dvc", "status", "evaluate").stdout
    for rel in ("train/NORMAL/IM-0000-0.jpeg", "test/PNEUMONIA/person100_virus_0.jpeg"):
        assert (clone / TREE / rel).read_bytes() == (proj / TREE / rel).read_bytes()
    assert (clone / "models/model.pt").read_bytes() == (proj / "models/model.pt").read_bytes()
