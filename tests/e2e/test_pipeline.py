"""End to end: the real `dvc` on a temporary copy of the repo with tiny params."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from e2e_tools import copy_repo, env, ran_stages, run, set_params

TINY = {
    "model": "simple_cnn_tiny",
    "data": {"image_size": 16,
             "synthetic": {"classes": ["normal", "nodule", "effusion"], "images_per_class": 12,
                           "size": 24}},
    "verify": {"models": ["simple_cnn_tiny", "coatnet", "swin", "mobileone"], "latency_runs": 1},
    "train": {"batch_size": 8, "eval_batch_size": 16, "progress": False},
    "head": {"epochs": 1},
    "finetune": {"epochs": 2, "min_epochs": 1},
    "kfold": {"folds": 2, "head_epochs": 1, "epochs": 1},
    "evaluate": {"batch_size": 16, "bootstrap": 50, "gradcam_per_class": 1, "gallery": 4},
    "export": {"formats": ["pytorch", "torchscript", "onnx"], "latency_runs": 1},
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A git+DVC copy of this repository's files, without outputs or cache, on tiny params."""
    dst = copy_repo(tmp_path_factory.mktemp("e2e") / "repo", TINY)
    first = run(dst, "dvc", "repro")
    assert ran_stages(first) == {"prepare", "split", "verify", "head", "finetune", "evaluate",
                                 "kfold", "export"}
    run(dst, "git", "add", "-A")
    run(dst, "git", "commit", "-qm", "first run")
    return dst


def test_outputs_written(repo):
    for rel in ("data/raw/classes.json", "data/split/manifest.csv", "data/split/stats.json",
                "models/head.pt", "models/model.pt", "metrics/data_report.json",
                "metrics/head.json", "metrics/finetune.json", "plots/test/predictions.csv",
                "metrics/verify.json", "plots/verify.md",
                "metrics/kfold.json", "models/kfold/fold_1.pt", "plots/kfold/predictions.csv",
                "plots/test/confusion.png", "dvc.lock", "models/calibration.json",
                "plots/report.html", "models/export/model.onnx", "metrics/export.json"):
        assert (repo / rel).exists(), rel
    test = json.loads((repo / "metrics/test.json").read_text())
    assert 0.0 <= test["accuracy"] <= 1.0 and test["n"] > 0
    assert set(test["per_class"]) == {"normal", "nodule", "effusion"}
    assert (repo / "plots/finetune/plots/metrics/val/loss.tsv").is_file()
    kfold = json.loads((repo / "metrics/kfold.json").read_text())
    assert set(kfold["per_fold"]) == {"fold_0", "fold_1"}
    assert set(kfold["test_ensemble"]) == {"mean", "vote"}


def test_second_repro_is_up_to_date(repo):
    again = run(repo, "dvc", "repro")
    assert ran_stages(again) == set()
    assert "up to date" in run(repo, "dvc", "status").stdout


def test_finetune_param_reruns_only_downstream(repo):
    set_params(repo, {"finetune": {"epochs": 1}})
    proc = run(repo, "dvc", "repro")
    # kfold shares finetune's procedure, so DVC reruns it; its folds use kfold.epochs, so
    # finetune.epochs leaves their fingerprints alone and the finished folds are reused.
    assert ran_stages(proc) == {"finetune", "evaluate", "kfold", "export"}
    assert "fold 1: finished earlier with these params, skipped" in proc.stdout + proc.stderr
    assert json.loads((repo / "metrics/finetune.json").read_text())["epochs_run"] == 1
    diff = run(repo, "dvc", "metrics", "diff", "--json")
    assert "metrics/test.json" in json.loads(diff.stdout)
    run(repo, "git", "checkout", "params.yaml")
    run(repo, "dvc", "repro")


def test_kfold_param_reruns_only_kfold(repo):
    set_params(repo, {"kfold": {"epochs": 2}})
    proc = run(repo, "dvc", "repro")
    assert ran_stages(proc) == {"kfold"}
    assert "finished earlier" not in proc.stdout + proc.stderr  # other params: folds retrain
    run(repo, "git", "checkout", "params.yaml")
    run(repo, "dvc", "repro")


def test_bad_param_fails_with_one_line(repo):
    set_params(repo, {"finetune": {"lr": -1}})
    proc = run(repo, "python", "-m", "medclass.stages.finetune", check=False)
    run(repo, "git", "checkout", "params.yaml")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error [finetune]: params.yaml: finetune.lr: Input should be greater than 0 (got -1)"]


def test_plots_show_renders_our_plots(repo):
    plots = run(repo, "dvc", "plots", "show", "--json")
    data = json.loads(plots.stdout)["data"]
    assert {"confusion_matrix", "finetune_loss", "head_loss"} <= set(data)
    assert not json.loads(plots.stdout).get("errors")


def start_queue(repo: Path) -> None:
    """`dvc queue start` with its output in a file: DVC's detached worker keeps the parent's
    stdout/stderr open (its intermediate fork waits on the worker), so captured pipes would
    only close when the whole queue is done and the worker has exited."""
    with open(repo.parent / "queue_start.log", "ab") as log:
        subprocess.run(["dvc", "queue", "start", "-j", "1"], cwd=repo, env=env(), stdout=log,
                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=120,
                       check=True)


def test_queued_backbone_sweep_and_compare(repo):
    """`dvc exp run --queue` with a choice sweep, `dvc queue start`, then compare the runs."""
    import time

    # target evaluate: each experiment runs verify, head, finetune and evaluate (not kfold and
    # export), enough to compare test metrics and half the time of a full pipeline
    run(repo, "dvc", "exp", "run", "--queue", "evaluate", "-S", "model=simple_cnn,small_resnet",
        "-S", "verify.models=selected")
    assert run(repo, "dvc", "queue", "status").stdout.count("Queued") == 2
    start_queue(repo)
    started = time.monotonic()
    deadline, restarts = started + 900, 0
    while time.monotonic() < deadline:
        status = run(repo, "dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        idle = "Running" not in status and "0 active, 0 idle" in status
        if idle and restarts < 2 and time.monotonic() - started > 30:
            # DVC's celery worker can die on a half-written kombu message between two
            # experiments (treeverse/dvc#10428); the rest stays queued: start it again
            start_queue(repo)
            started, restarts = time.monotonic(), restarts + 1
        time.sleep(5)
    assert status.count("Success") == 2, status
    shown = json.loads(run(repo, "dvc", "exp", "show", "--json").stdout)
    runs = [e for commit in shown for e in (commit.get("experiments") or [])]
    models = {}
    for exp in runs:
        for rev in exp.get("revs", []):
            params = rev["data"]["params"]["params.yaml"]["data"]
            metrics = rev["data"]["metrics"]["metrics/test.json"]["data"]
            models[params["model"]] = (rev["name"], metrics["accuracy"])
    assert {"simple_cnn", "small_resnet"} <= set(models)
    names = [models[m][0] for m in ("simple_cnn", "small_resnet")]
    diff = run(repo, "dvc", "exp", "diff", *names, "--json").stdout
    assert "model" in diff and "accuracy" in diff


def test_push_pull_round_trip(repo, tmp_path):
    remote = tmp_path / "remote"
    run(repo, "dvc", "remote", "add", "-f", "-d", "local", str(remote))
    run(repo, "dvc", "push")
    shutil.rmtree(repo / ".dvc" / "cache")
    for rel in ("data/raw", "data/split"):
        shutil.rmtree(repo / rel)
    for rel in ("models/head.pt", "models/model.pt"):
        (repo / rel).unlink()
    shutil.rmtree(repo / "models/kfold")
    shutil.rmtree(repo / "models/export")
    assert "up to date" not in run(repo, "dvc", "status").stdout
    run(repo, "dvc", "pull")
    assert "up to date" in run(repo, "dvc", "status").stdout
    assert (repo / "models/model.pt").is_file()
    assert (repo / "models/kfold/fold_1.pt").is_file()
    assert (repo / "models/export/model.onnx").is_file()


def test_registered_version_fetched_with_dvc_artifacts_get(repo, tmp_path):
    """dvc.yaml's `artifacts:`: a version registered with `gto register` (a git tag
    `<name>@<version>`) is fetched elsewhere by `dvc artifacts get` from the DVC remote (the
    repo's cache set aside), byte for byte, for the checkpoint and the export folder."""
    run(repo, "dvc", "remote", "add", "-f", "-d", "local", str(tmp_path / "remote"))
    run(repo, "dvc", "push")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "registry: remote", "--allow-empty")
    for name in ("medclass-model", "medclass-export"):
        run(repo, "gto", "register", name, "--version", "v1.0.0")
    tags = run(repo, "git", "tag", "--list").stdout.split()
    assert {"medclass-model@v1.0.0", "medclass-export@v1.0.0"} <= set(tags)

    elsewhere, cache, aside = tmp_path / "elsewhere", repo / ".dvc/cache", tmp_path / "cache"
    elsewhere.mkdir()
    shutil.move(cache, aside)  # what is fetched must come from the remote
    try:
        run(elsewhere, "dvc", "artifacts", "get", str(repo), "medclass-model",
            "--rev", "v1.0.0", "-o", "model.pt")
        run(elsewhere, "dvc", "artifacts", "get", str(repo), "medclass-export",
            "--rev", "v1.0.0", "-o", "export")
    finally:
        shutil.move(aside, cache)
    assert (elsewhere / "model.pt").read_bytes() == (repo / "models/model.pt").read_bytes()
    local = sorted(p.relative_to(repo / "models/export") for p in
                   (repo / "models/export").rglob("*") if p.is_file())
    fetched = sorted(p.relative_to(elsewhere / "export") for p in
                     (elsewhere / "export").rglob("*") if p.is_file())
    assert fetched == local and Path("model.onnx") in fetched
    for rel in local:
        assert (elsewhere / "export" / rel).read_bytes() == \
            (repo / "models/export" / rel).read_bytes(), rel
    unknown = run(elsewhere, "dvc", "artifacts", "get", str(repo), "medclass-model",
                  "--rev", "v9.9.9", "-o", "none.pt", check=False)
    assert unknown.returncode != 0 and not (elsewhere / "none.pt").exists()


def test_external_set_scored_and_tracked(repo):
    """evaluate.external: `dvc repro evaluate` scores a class-folder set under data/external
    without retraining, and editing one of its images makes DVC call evaluate stale.
    Last in the module: it leaves the repo on these params."""
    import numpy as np
    from PIL import Image

    from medclass.data.synthetic import render

    site = repo / "data/external/site_b"
    for ci, name in enumerate(TINY["data"]["synthetic"]["classes"]):
        (site / name).mkdir(parents=True)
        for j in range(2):
            img = render(name, ci, 24, 0.5, np.random.default_rng([9, ci, j]))
            Image.fromarray(img).save(site / name / f"{j}.png")
    set_params(repo, {"evaluate": {"external": [{"name": "site_b",
                                                 "path": "data/external/site_b"}]}})
    stages = ran_stages(run(repo, "dvc", "repro", "evaluate"))
    assert "evaluate" in stages and not stages & {"head", "finetune"}  # no retraining
    test = json.loads((repo / "metrics/test.json").read_text())
    ext = test["external"]["site_b"]
    assert ext["n_images"] == 6 and 0.0 <= ext["accuracy"] <= 1.0
    assert ext["vs_test"]["accuracy"] == pytest.approx(ext["accuracy"] - test["accuracy"])
    assert json.loads(run(repo, "dvc", "status", "--json", "evaluate").stdout) == {}
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(site / "normal" / "0.png")
    status = json.loads(run(repo, "dvc", "status", "--json", "evaluate").stdout)
    assert {"changed deps": {"data/external": "modified"}} in status["evaluate"]
