"""kfold: stratified folds, the too-few-images error, outputs, and resuming finished folds."""

import csv
import json

import numpy as np
import pytest
import torch

import medclass.train.kfold as kfold
from medclass import repro
from medclass.config import parse_params
from medclass.errors import MedclassError
from medclass.io import load_checkpoint
from medclass.train.kfold import KFoldPaths, RowView, make_folds, run_kfold

CLASSES = ["normal", "nodule", "effusion"]
COUNTS = {"train": 8, "val": 2, "test": 3}  # per class
TEST_PIXEL = 255  # test images are all 255; train/val images never reach it


@pytest.fixture(autouse=True)
def _outside_any_repo(tmp_path, monkeypatch):
    """dvclive inspects the git/DVC repo of the working directory; keep tests independent."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def split_dir(tmp_path):
    """A tiny split folder as the split stage writes it: manifest, stats and uint8 cache."""
    rng = np.random.default_rng(0)
    out = tmp_path / "split"
    (out / "cache").mkdir(parents=True)
    rows = []
    for split, n in COUNTS.items():
        labels = np.repeat(np.arange(len(CLASSES)), n)
        if split == "test":
            images = np.full((len(labels), 1, 16, 16), TEST_PIXEL, dtype=np.uint8)
        else:
            images = rng.integers(0, 120, size=(len(labels), 1, 16, 16), dtype=np.uint8)
            for i, lab in enumerate(labels):  # a class-specific bright band
                images[i, 0, 4 * lab:4 * lab + 4] = 200
        np.save(out / "cache" / f"{split}_images.npy", images)
        np.save(out / "cache" / f"{split}_labels.npy", labels.astype(np.int64))
        rows += [(f"{CLASSES[lab]}/{split}_{i}.png", lab, CLASSES[lab], split)
                 for i, lab in enumerate(labels)]
    stats = {"mean": [0.3], "std": [0.25], "channels": 1, "image_size": 16, "classes": CLASSES}
    (out / "stats.json").write_text(json.dumps(stats))
    with (out / "manifest.csv").open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([("path", "label", "class_name", "split"),
                                                       *rows])
    return out


def _params(**kfold_over):
    return parse_params({
        "model": "simple_cnn_tiny", "data": {"image_size": 16},
        "train": {"batch_size": 8, "eval_batch_size": 32, "progress": False, "augment": "none"},
        "kfold": {"folds": 2, "head_epochs": 1, "epochs": 1, **kfold_over},
    })


def _paths(root):
    return KFoldPaths(root / "models" / "kfold", root / "plots" / "kfold", root / "kfold.json")


def _count_fits(monkeypatch, fail_on=None):
    """Wrap fit: count calls, check no test image is trained on, optionally interrupt."""
    real, calls = kfold.fit, []

    def spy(model, phase, data, *args, **kwargs):
        calls.append(phase.name)
        if fail_on is not None and len(calls) == fail_on:
            raise KeyboardInterrupt
        for ds in data.splits.values():
            assert ds.images[np.arange(len(ds))].max() < TEST_PIXEL
        return real(model, phase, data, *args, **kwargs)

    monkeypatch.setattr(kfold, "fit", spy)
    return calls


@pytest.mark.parametrize("k", [2, 3, 5])
def test_folds_are_stratified_disjoint_and_cover_train_val(k):
    labels = np.array([0] * 7 + [1] * 5 + [2] * 12)
    folds = make_folds(labels, k, seed=3, classes=CLASSES)
    assert len(folds) == k
    vals = [va for _, va in folds]
    for tr, va in folds:
        assert set(labels[va]) == {0, 1, 2} and set(labels[tr]) == {0, 1, 2}
        assert not set(tr) & set(va)
        assert sorted(np.concatenate([tr, va])) == list(range(len(labels)))
    for i in range(k):
        for j in range(i + 1, k):
            assert not set(vals[i]) & set(vals[j])
    assert sorted(np.concatenate(vals)) == list(range(len(labels)))


def test_folds_are_reproducible_by_seed():
    labels = np.arange(40) % 4
    a, b = make_folds(labels, 4, 7, CLASSES + ["x"]), make_folds(labels, 4, 7, CLASSES + ["x"])
    c = make_folds(labels, 4, 8, CLASSES + ["x"])
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c, strict=True))


def test_too_few_images_for_k_is_one_clear_line():
    labels = np.array([0] * 6 + [1] * 2 + [2] * 6)
    with pytest.raises(MedclassError) as err:
        make_folds(labels, 3, 0, CLASSES)
    assert str(err.value) == ("class 'nodule' has 2 train+val images; kfold.folds=3 needs at "
                              "least 3 — lower kfold.folds or add images")


def test_row_view_indexes_across_parts_without_concatenating():
    a, b = np.arange(6).reshape(3, 2), np.arange(100, 108).reshape(4, 2)
    view = RowView([a, b], np.array([4, 0, 6, 2]))
    assert len(view) == 4
    np.testing.assert_array_equal(view[[0, 1, 2, 3]], [[102, 103], [0, 1], [106, 107], [4, 5]])
    np.testing.assert_array_equal(view[np.array([2])], [[106, 107]])


def test_run_writes_fold_models_metrics_and_predictions(tmp_path, split_dir, monkeypatch):
    calls = _count_fits(monkeypatch)  # also asserts that no test image is trained on
    paths = _paths(tmp_path)
    result = run_kfold(_params(), split_dir, paths)
    assert calls == ["head", "finetune"] * 2
    assert sorted(f.name for f in paths.models.iterdir()) == [
        "fold_0.json", "fold_0.pt", "fold_1.json", "fold_1.pt"]  # resume files cleaned up
    ckpt = load_checkpoint(paths.best(1))
    assert ckpt["meta"]["fold"] == 1 and ckpt["meta"]["classes"] == CLASSES
    saved = json.loads(paths.metrics.read_text())
    assert saved.pop("repro") == repro.tag("exact", 2)  # the default params
    assert saved == json.loads(json.dumps(result))
    assert saved["n_trainval"] == 30 and saved["n_test"] == 9
    for fold in saved["per_fold"].values():
        assert fold["n_val"] == 15 and set(fold["val"]) == {"accuracy", "f1_macro", "auc", "loss"}
        assert set(fold["test"]) == {"accuracy", "f1_macro", "auc", "loss"}
    assert set(saved["val"]) == {"mean", "std"} and saved["val"]["std"]["accuracy"] is not None
    assert set(saved["test_ensemble"]) == {"mean", "vote"}
    assert saved["disagreement"]["mutual_information"] >= 0.0
    with (paths.plots / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9
    assert list(rows[0]) == ["path", "actual", "predicted", "predicted_mean", "predicted_vote",
                             "prob_normal", "prob_nodule", "prob_effusion", "variance",
                             "mutual_information"]
    assert all(r["path"].split("/")[1].startswith("test_") for r in rows)
    for i in range(2):
        assert (paths.plots / "curves" / f"fold_{i}.csv").is_file()
        assert (paths.plots / f"fold_{i}/finetune/plots/metrics/val/loss.tsv").is_file()


@pytest.mark.parametrize(("fail_on", "rerun_calls"), [(3, ["head", "finetune"]),
                                                      (4, ["finetune"])])
def test_interrupted_run_skips_finished_work_and_matches(tmp_path, split_dir, monkeypatch,
                                                         fail_on, rerun_calls):
    """Interrupted before fold 1 (3) or in its finetune (4): the rerun skips fold 0 (and fold 1's
    finished head) and ends with the same fold models as an uninterrupted run."""
    run_kfold(_params(), split_dir, _paths(tmp_path / "full"))
    paths = _paths(tmp_path / "cut")
    _count_fits(monkeypatch, fail_on=fail_on)
    with pytest.raises(KeyboardInterrupt):
        run_kfold(_params(), split_dir, paths)
    assert paths.done(0).is_file() and not paths.done(1).is_file()
    calls = _count_fits(monkeypatch)
    run_kfold(_params(), split_dir, paths)
    assert calls == rerun_calls
    for i in range(2):
        full = load_checkpoint(_paths(tmp_path / "full").best(i))["model"]
        cut = load_checkpoint(paths.best(i))["model"]
        assert all(torch.equal(full[k], cut[k]) for k in full)
    assert (paths.plots / "fold_0/finetune/plots/metrics/val/loss.tsv").is_file()  # replayed


def test_changed_params_retrain_and_fewer_folds_drop_stale_files(tmp_path, split_dir,
                                                                monkeypatch):
    paths = _paths(tmp_path)
    run_kfold(_params(folds=3), split_dir, paths)
    calls = _count_fits(monkeypatch)
    run_kfold(_params(folds=3), split_dir, paths)
    assert calls == []  # everything finished: nothing retrains
    run_kfold(_params(folds=2), split_dir, paths)
    assert calls == ["head", "finetune"] * 2  # other folds: other fingerprints
    assert not any(f.name.startswith("fold_2") for f in paths.models.iterdir())
    assert not (paths.plots / "fold_2").exists()


def test_fold_fingerprint_sees_the_architecture_and_draws_no_random_numbers() -> None:
    """Folds finished by an older version of a backbone (renamed weights) must not be reused:
    the architecture is part of the fold fingerprint; building it leaves the RNG alone."""
    from medclass.config import parse_params
    from medclass.train.kfold import architecture

    state = torch.random.get_rng_state()
    small = architecture(parse_params({"model": "simple_cnn_tiny"}), 3, 1)
    assert torch.equal(state, torch.random.get_rng_state())
    assert small != architecture(parse_params({"model": "simple_cnn"}), 3, 1)
    assert small != architecture(parse_params({"model": "simple_cnn_tiny"}), 4, 1)
    assert small == architecture(parse_params({"model": "simple_cnn_tiny"}), 3, 1)
