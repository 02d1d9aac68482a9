"""Interruptions: a finetune stage stopped by SIGTERM, then SIGKILLed mid-epoch, resumes and
ends exactly like an uninterrupted run; repeated runs give identical metrics (determinism)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from medclass.io import load_checkpoint

TINY = {
    "model": "simple_cnn_tiny",
    "seed": 5,
    "data": {"image_size": 16, "synthetic": {"classes": ["normal", "nodule"],
                                             "images_per_class": 160, "size": 16}},
    "train": {"progress": False, "batch_size": 8, "eval_batch_size": 64},
    "head": {"epochs": 1},
    "finetune": {"epochs": 4, "patience": 10},
}
LAST = Path("models/ckpt/finetune_last.pt")
OUTPUTS = ("metrics/finetune.json", "models/model.pt", str(LAST))


@pytest.fixture(scope="module")
def project(stage_project) -> Path:
    """Prepared data and a trained head in a tmp project (no finetune outputs)."""
    from medclass.stages import head, prepare, split

    return stage_project("interrupt", TINY, (prepare, split, head))


def _clear(root: Path) -> None:
    for rel in OUTPUTS:
        (root / rel).unlink(missing_ok=True)
    shutil.rmtree(root / "plots/finetune", ignore_errors=True)


def _finetune_uninterrupted(root: Path) -> tuple[dict, dict]:
    """The reference run, started like the interrupted ones (a fresh launcher process, so
    no torch state of the pytest process, such as its thread count, can differ)."""
    _clear(root)
    proc = _start(root)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    return (json.loads((root / "metrics/finetune.json").read_text()),
            load_checkpoint(root / "models/model.pt")["model"])


def _start(root: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "medclass.launch", "--nproc-per-node", "1",
           "medclass.stages.finetune"]
    return subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300) -> None:
    """Poll until ``ready()``; fail if the process ends first."""
    end = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"stage ended before the signal: {proc.communicate()[1][-2000:]}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError("timed out waiting for a checkpoint")
        time.sleep(0.02)


def _last_epoch(root: Path) -> int:
    try:
        return int(load_checkpoint(root / LAST)["epoch"])
    except Exception:  # not written yet
        return -1


def test_sigterm_then_sigkill_mid_epoch_resume_to_the_uninterrupted_result(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref_metrics, ref_weights = _finetune_uninterrupted(project)
    assert ref_metrics["epochs_run"] == 4
    _clear(project)

    proc = _start(project)  # SIGTERM once epoch 1 is checkpointed: epoch 2 is running
    _wait_for(proc, lambda: _last_epoch(project) >= 0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == "terminated [finetune]: rerun the stage to resume"
    assert not (project / "metrics/finetune.json").exists()  # nothing claims to be finished
    first_stop = _last_epoch(project)
    assert 0 <= first_stop < 3

    proc = _start(project)  # resumes, then dies by SIGKILL mid-epoch (no handler can run)
    _wait_for(proc, lambda: _last_epoch(project) > first_stop)
    time.sleep(0.1)
    proc.kill()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert f"resuming after epoch {first_stop + 1}" in err
    assert not list(project.rglob("*.tmp*")), "a half-written file was left behind"
    killed_at = _last_epoch(project)
    assert load_checkpoint(project / LAST)["complete"] is (killed_at == 3)

    proc = _start(project)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    if killed_at < 3:
        assert f"resuming after epoch {killed_at + 1}" in err
    metrics = json.loads((project / "metrics/finetune.json").read_text())
    assert metrics == ref_metrics
    weights = load_checkpoint(project / "models/model.pt")["model"]
    assert all(torch.equal(ref_weights[k], weights[k]) for k in ref_weights)


def test_same_params_and_seed_give_identical_metrics(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = _finetune_uninterrupted(project)
    again, _ = _finetune_uninterrupted(project)
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    raw = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump({**raw, "seed": 6}))
    try:
        other, _ = _finetune_uninterrupted(project)
    finally:
        (project / "params.yaml").write_text(yaml.safe_dump(raw))
    assert other != first  # the seed really reaches training (shuffling, augmentation)
