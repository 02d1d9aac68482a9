"""``medclass debug …`` on a tiny tmp project (prepare + split, 16 px, 3 classes)."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from medclass import debug
from medclass.cli import app
from medclass.data.bundle import load_data
from medclass.train.optim import build_scheduler

TINY = {
    "model": "simple_cnn_tiny",
    "seed": 3,
    "data": {"image_size": 16, "synthetic": {"classes": ["normal", "nodule", "effusion"],
                                             "images_per_class": 12, "size": 16}},
    "train": {"progress": False, "batch_size": 8, "augment": "strong", "drop_rate": 0.2},
    "head": {"epochs": 2, "lr": 0.003},
    "finetune": {"epochs": 3, "lr": 0.004, "scheduler": "cosine", "warmup_epochs": 1,
                 "min_lr_ratio": 0.1, "backbone_lr_mult": 0.5},
}


@pytest.fixture(scope="module")
def project(stage_project) -> Path:
    from medclass.stages import prepare, split

    return stage_project("debug", TINY, (prepare, split))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not spin against a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str):
    monkeypatch.chdir(root)
    return CliRunner().invoke(app, ["debug", *args])


def test_overfit_batch_reaches_full_accuracy(project, monkeypatch) -> None:
    r = _run(project, monkeypatch, "overfit-batch", "simple_cnn_tiny", "--steps", "150",
             "--lr", "0.01", "--log-every", "5", "--batch-size", "12")
    assert r.exit_code == 0, r.output
    assert "ok: train accuracy 1.000 >= 1 at step" in r.stdout
    assert "step     5  loss" in r.stdout


def test_overfit_batch_fails_with_loss_curve(project, monkeypatch) -> None:
    r = _run(project, monkeypatch, "overfit-batch", "simple_cnn_tiny", "--steps", "2")
    assert r.exit_code == 1
    curve = r.stdout.split("loss curve: ")[1].splitlines()[0]
    values = [float(v) for v in curve.strip("[]").split(",")]
    assert len(values) == 2 and all(v > 0 for v in values)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: overfit-batch")


def test_overfit_batch_other_model_with_kwargs(project, monkeypatch) -> None:
    r = _run(project, monkeypatch, "overfit-batch", "simple_cnn", "--steps", "1", "--target",
             "0", "--batch-size", "4", "--model-kwargs", '{"widths": [4], "depths": [1]}')
    assert r.exit_code == 0, r.output
    assert "4 images, 3 classes" in r.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["overfit-batch", "simple_cnn_tiniest"], "error: model: unknown backbone"),
    (["overfit-batch", "simple_cnn_tiny", "--model-kwargs", "{bad"], "error: --model-kwargs"),
    (["throughput", "simple_cnn_tiny", "--model-kwargs", '{"widths": 3}'],
     "error: train.model_kwargs: 'simple_cnn_tiny' rejects"),
])
def test_user_errors_exit_2_with_one_line(project, monkeypatch, args, message) -> None:
    r = _run(project, monkeypatch, *args)
    assert r.exit_code == 2
    assert r.stderr.startswith(message) and r.stderr.count("\n") == 1


@pytest.mark.parametrize("cmd", [["overfit-batch", "simple_cnn_tiny"], ["lr-schedule"],
                                 ["dataset"]])
def test_missing_split_says_run_split(tmp_path, monkeypatch, cmd) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    r = _run(tmp_path, monkeypatch, *cmd)
    assert r.exit_code == 2
    assert "data/split not found; run `dvc repro split`" in r.stderr


def test_lr_schedule_matches_build_scheduler(project, monkeypatch) -> None:
    r = _run(project, monkeypatch, "lr-schedule", "--out", "plots/debug/lr.png")
    assert r.exit_code == 0, r.output
    assert (project / "plots/debug/lr.png").stat().st_size > 0
    lrs: dict[tuple[str, str], list[float]] = defaultdict(list)
    with open(project / "plots/debug/lr.csv", newline="") as f:
        for row in csv.DictReader(f):
            lrs[row["phase"], row["group"]].append(float(row["lr"]))
    n_train = len(load_data(project / "data/split", ("train",)).splits["train"])
    spe = n_train // 8  # drop_last, batch 8
    assert spe >= 2
    # head: from-scratch backbone -> full mode, one constant LR for every group
    assert {g for p, g in lrs if p == "head"} == {"head", "head_no_decay", "backbone",
                                                  "backbone_no_decay"}
    assert lrs["head", "backbone"] == [0.003] * (2 * spe)
    # finetune: warmup + cosine; peak = finetune.lr for the head, x0.5 for the backbone
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.004)
    sched = build_scheduler(opt, "cosine", epochs=3, steps_per_epoch=spe, warmup_epochs=1,
                            min_lr_ratio=0.1)
    expected = []
    for _ in range(3 * spe):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs["finetune", "head"] == pytest.approx(expected, rel=1e-12)
    assert max(lrs["finetune", "head"]) == pytest.approx(0.004)
    assert max(lrs["finetune", "backbone"]) == pytest.approx(0.002)
    assert lrs["finetune", "head"][0] < 0.004 and lrs["finetune", "head"][-1] < 0.004
    assert "peak 4.000e-03" in r.stdout


def test_dataset_grid_size_and_content(project, monkeypatch) -> None:
    r = _run(project, monkeypatch, "dataset", "--per-class", "3")
    assert r.exit_code == 0, r.output
    with Image.open(project / "plots/debug/dataset.png") as im:
        assert im.size == (debug.LABEL_PX + 3 * debug.CELL_PX, debug.TITLE_PX + 3 * debug.CELL_PX)
        cell = np.asarray(im.convert("L"))[debug.TITLE_PX + 10: debug.TITLE_PX + 80,
                                            debug.LABEL_PX + 10: debug.LABEL_PX + 80]
    assert cell.std() > 1  # an image was drawn, not a blank cell


def test_throughput_json(project, monkeypatch) -> None:
    r = _run(project, monkeypatch, "throughput", "simple_cnn_tiny", "--iters", "2",
             "--warmup", "1", "--batch-size", "4", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    stats = json.loads((project / "data/split/stats.json").read_text())
    assert (out["image_size"], out["channels"]) == (16, stats["channels"])
    for key in ("forward_images_per_s", "train_step_images_per_s", "forward_ms_per_batch",
                "train_step_ms_per_batch", "params"):
        assert out[key] > 0


def test_throughput_without_split_uses_options(tmp_path, monkeypatch) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    r = _run(tmp_path, monkeypatch, "throughput", "simple_cnn_tiny", "--iters", "1",
             "--warmup", "0", "--batch-size", "2", "--image-size", "12", "--channels", "3")
    assert r.exit_code == 0, r.output
    assert "12 px x 3 ch, batch 2" in r.stdout
    assert r.stdout.splitlines()[2].split()[0] == "forward"
