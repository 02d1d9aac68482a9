"""fit(): learning, early stopping, checkpoints and resume after an interruption."""

import numpy as np
import pytest
import torch

import medclass.train.loop as loop
from medclass.config import TrainParams
from medclass.data.bundle import DataBundle
from medclass.data.dataset import CachedDataset
from medclass.io import load_checkpoint
from medclass.models import create_model
from medclass.train.loop import EarlyStopping, Outputs, Phase, fit


def _bundle(n=64, size=12, seed=0):
    """Two classes: a bright square in the left half vs the right half."""
    rng = np.random.default_rng(seed)

    def make(k):
        x = rng.integers(0, 60, size=(k, 1, size, size), dtype=np.uint8)
        y = np.arange(k) % 2
        for i, lab in enumerate(y):
            c = 2 if lab == 0 else size - 6
            x[i, 0, 4:8, c:c + 4] = 230
        return CachedDataset(x, y)

    stats = {"mean": [0.2], "std": [0.3], "channels": 1, "image_size": size,
             "classes": ["left", "right"]}
    return DataBundle(["left", "right"], stats, {"train": make(n), "val": make(32)})


@pytest.fixture(autouse=True)
def _outside_any_repo(tmp_path, monkeypatch):
    """dvclive inspects the git/DVC repo of the working directory; keep tests independent."""
    monkeypatch.chdir(tmp_path)


TRAIN = TrainParams(batch_size=16, progress=False, augment="none", label_smoothing=0.0)


def _run(tmp_path, phase, data=None, train=TRAIN):
    torch.manual_seed(0)
    model = create_model("simple_cnn_tiny", num_classes=2, in_chans=1)
    out = Outputs(tmp_path / "best.pt", tmp_path / "last.pt", tmp_path / "live")
    summary = fit(model, phase, data or _bundle(), train, seed=0, meta={"model": "x"},
                  outputs=out, fingerprint="fp")
    return summary, out


def test_fit_learns_and_writes_checkpoints(tmp_path):
    phase = Phase("t", epochs=6, head_lr=3e-3, backbone_lr=3e-3, weight_decay=0.0)
    summary, out = _run(tmp_path, phase)
    assert summary["epochs_run"] == 6
    assert summary["best_val_acc"] >= 0.9
    best = load_checkpoint(out.best)
    assert best["meta"]["epoch"] == summary["best_epoch"] - 1
    assert (out.live_dir / "plots" / "metrics" / "val" / "loss.tsv").is_file()


def test_data_on_device_gives_the_same_weights(tmp_path, caplog):
    phase = Phase("t", epochs=2, head_lr=3e-3, backbone_lr=3e-3, weight_decay=0.0)
    host, host_out = _run(tmp_path / "a", phase, train=TRAIN.model_copy(
        update={"data_on_device": False}))
    with caplog.at_level("INFO", logger="medclass.data.bundle"):
        dev, dev_out = _run(tmp_path / "b", phase, train=TRAIN.model_copy(
            update={"data_on_device": True}))
    assert any("images held on cpu" in r.getMessage() for r in caplog.records)
    assert host == dev
    a, b = load_checkpoint(host_out.best)["model"], load_checkpoint(dev_out.best)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_frozen_backbone_does_not_change(tmp_path):
    phase = Phase("t", epochs=1, head_lr=1e-2, backbone_lr=None, weight_decay=0.0)
    torch.manual_seed(0)
    before = create_model("simple_cnn_tiny", num_classes=2, in_chans=1).state_dict()
    _, out = _run(tmp_path, phase)
    after = load_checkpoint(out.best)["model"]
    for k, v in before.items():
        if k.startswith("fc."):
            assert not torch.equal(v, after[k])
        else:  # conv weights and BN running stats stay fixed
            assert torch.equal(v, after[k]), k


def test_resume_after_interrupt_matches_uninterrupted(tmp_path, interrupt_at):
    phase = Phase("t", epochs=4, head_lr=3e-3, backbone_lr=1e-3, weight_decay=0.01,
                  scheduler="cosine", warmup_epochs=1)
    full, full_out = _run(tmp_path / "a", phase)

    interrupt_at(lambda: _run(tmp_path / "b", phase), 3)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    resumed, res_out = _run(tmp_path / "b", phase)
    assert resumed == full
    a, b = load_checkpoint(full_out.best)["model"], load_checkpoint(res_out.best)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_changed_fingerprint_starts_fresh(tmp_path):
    phase = Phase("t", epochs=2, head_lr=1e-3, backbone_lr=1e-3, weight_decay=0.0)
    _run(tmp_path, phase)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["complete"] is True
    assert loop._load_resume(tmp_path / "last.pt", "other") is None
    assert loop._load_resume(tmp_path / "last.pt", "fp") is None  # complete: never resumed


def test_early_stopping_patience_and_min_epochs():
    stop = EarlyStopping(Phase("t", 10, 1, 1, 0, monitor="val_loss", patience=2, min_epochs=5))
    flags = [stop.step(e, v) for e, v in enumerate([1.0, 0.9, 0.95, 0.96, 0.97, 0.98])]
    assert [f[0] for f in flags] == [True, True, False, False, False, False]
    assert [f[1] for f in flags] == [False, False, False, False, True, True]
    assert stop.best_epoch == 1
    acc = EarlyStopping(Phase("t", 10, 1, 1, 0, monitor="val_acc", patience=1))
    assert acc.step(0, 0.5) == (True, False)
    assert acc.step(1, 0.4) == (False, True)


def _undefined_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelname == "WARNING" and "is undefined" in r.getMessage()]


def test_undefined_monitored_value_never_improves_and_warns_once(caplog):
    auc = EarlyStopping(Phase("finetune", 10, 1, 1, 0, monitor="val_auc", patience=3))
    with caplog.at_level("WARNING", logger="medclass.train.early_stopping"):
        flags = [auc.step(e, v) for e, v in enumerate([None, float("nan"), 0.7, None, 0.8])]
    assert [f[0] for f in flags] == [False, False, True, False, True]  # a defined value still does
    assert (auc.best, auc.best_epoch, auc.bad_epochs) == (0.8, 4, 0)
    assert _undefined_warnings(caplog) == [
        "finetune.monitor val_auc is undefined (a class absent from the validation split?); "
        "such epochs never count as an improvement"]

    caplog.clear()
    loss = EarlyStopping(Phase("finetune", 10, 1, 1, 0, monitor="val_loss", patience=2))
    with caplog.at_level("WARNING", logger="medclass.train.early_stopping"):
        assert loss.step(0, 0.5) == (True, False)
        assert loss.step(1, float("nan")) == (False, False)  # NaN < best is no improvement
        assert loss.step(2, None) == (False, True)  # undefined epochs count towards patience
    assert loss.best == 0.5 and loss.best_epoch == 0
    assert _undefined_warnings(caplog) == [
        "finetune.monitor val_loss is undefined (got nan); such epochs never count as an "
        "improvement"]
    resumed = EarlyStopping(Phase("finetune", 10, 1, 1, 0, monitor="val_loss", patience=2))
    resumed.load_state_dict({"best": float("nan"), "best_epoch": 0, "bad_epochs": 1})
    assert resumed.step(1, 0.9) == (True, False)  # a NaN best from an older run is no best


def test_every_epoch_undefined_keeps_the_last_epochs_weights(tmp_path, caplog):
    """val_auc with one class in the validation split: no epoch is best, none resets
    patience, and the saved weights are the last epoch's (not the untrained ones)."""
    full = _bundle()
    val, keep = full.splits["val"], full.splits["val"].labels == 0
    data = DataBundle(full.classes, full.stats,
                      {"train": full.splits["train"],
                       "val": CachedDataset(val.images[keep], val.labels[keep])})
    phase = Phase("finetune", epochs=4, head_lr=3e-3, backbone_lr=3e-3, weight_decay=0.0,
                  monitor="val_auc", patience=2)
    with caplog.at_level("WARNING", logger="medclass.train.early_stopping"):
        summary, out = _run(tmp_path, phase, data)
    assert summary["epochs_run"] == 2 and summary["stopped_early"] is True
    assert summary["best_epoch"] == 2 and summary["best_val_auc"] is None
    best, last = load_checkpoint(out.best), load_checkpoint(out.last)
    assert best["meta"]["epoch"] == 1
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])
    assert len(_undefined_warnings(caplog)) == 1
    assert any("no epoch had a defined val_auc" in r.getMessage() for r in caplog.records)


def _nan_at(monkeypatch, bad_calls):
    """Make the training loss NaN on the given (0-based) criterion calls."""
    real = loop.build_criterion
    calls = {"n": 0}

    class NanAt(torch.nn.Module):
        def __init__(self, crit):
            super().__init__()
            self.crit = crit

        def forward(self, logits, y):
            i, calls["n"] = calls["n"], calls["n"] + 1
            loss = self.crit(logits, y)
            return loss * float("nan") if i in bad_calls else loss

    def build(*args, **kwargs):
        return NanAt(real(*args, **kwargs))

    monkeypatch.setattr(loop, "build_criterion", build)


def test_nan_loss_stops_and_keeps_the_best_checkpoint(tmp_path, monkeypatch):
    from medclass.errors import MedclassError

    phase = Phase("t", epochs=3, head_lr=1e-3, backbone_lr=1e-3, weight_decay=0.0)
    _nan_at(monkeypatch, {5})  # 64 images / batch 16 = 4 steps per epoch: epoch 2, step 2
    saved = {}
    real_save = loop.save_checkpoint

    def spy(path, obj):
        real_save(path, obj)
        saved[path.name] = path.read_bytes()

    monkeypatch.setattr(loop, "save_checkpoint", spy)
    with pytest.raises(MedclassError, match=r"non-finite \(NaN/Inf\) loss .*nonfinite_skip: 0"):
        _run(tmp_path, phase)
    assert (tmp_path / "best.pt").read_bytes() == saved["best.pt"]  # epoch 1's, untouched
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 0


def test_nan_steps_within_the_skip_budget_are_skipped(tmp_path, monkeypatch):
    from medclass.errors import MedclassError

    phase = Phase("t", epochs=2, head_lr=1e-3, backbone_lr=1e-3, weight_decay=0.0)
    _nan_at(monkeypatch, {1, 2})
    budget2 = TRAIN.model_copy(update={"nonfinite_skip": 2})
    summary, out = _run(tmp_path / "ok", phase, train=budget2)
    assert summary["epochs_run"] == 2 and np.isfinite(summary["final_train_loss"])
    weights = load_checkpoint(out.best)["model"]
    assert all(torch.isfinite(v.float()).all() for v in weights.values())

    _nan_at(monkeypatch, {1, 2})
    with pytest.raises(MedclassError, match="after skipping 1 bad step"):
        _run(tmp_path / "over", phase, train=TRAIN.model_copy(update={"nonfinite_skip": 1}))
    assert not (tmp_path / "over" / "best.pt").exists()


def test_exploding_weights_stop_the_stage(tmp_path):
    from medclass.errors import MedclassError

    phase = Phase("t", epochs=2, head_lr=1e30, backbone_lr=1e30, weight_decay=0.0)
    with pytest.raises(MedclassError, match="non-finite"):
        _run(tmp_path, phase, _bundle(), train=TRAIN.model_copy(update={"grad_clip": None}))


def test_ema_weights_are_validated_and_checkpointed(tmp_path):
    phase = Phase("t", epochs=1, head_lr=3e-3, backbone_lr=3e-3, weight_decay=0.0)
    raw, raw_out = _run(tmp_path / "raw", phase)
    ema, ema_out = _run(tmp_path / "ema", phase, train=TRAIN.model_copy(update={"ema_decay": 0.9}))
    last = load_checkpoint(ema_out.last)
    assert last["ema"] is not None
    averaged = {k.removeprefix("module."): v for k, v in last["ema"].items()}
    # the best checkpoint holds averaged weights, not the raw ones of the same run
    best = load_checkpoint(ema_out.best)["model"]
    w = "features.0.weight" if "features.0.weight" in best else next(iter(best))
    assert not torch.equal(best[w], last["model"][w])
    assert ema["best_epoch"] == 1  # one epoch: the best weights are the final average
    for k, v in best.items():
        assert torch.equal(v, averaged[k]), k
    # same seed and data: EMA changes the validated weights, so the curves differ
    assert raw["best_val_loss"] != ema["best_val_loss"]
    assert load_checkpoint(raw_out.last)["ema"] is None


def test_multiscale_training_runs_and_a_fixed_size_model_stops_before_training(tmp_path):
    train = TRAIN.model_copy(update={"aug": TRAIN.aug.model_copy(update={"multiscale": [8, 16]})})
    summary, out = _run(tmp_path, Phase("head", 1, 1e-2, 1e-2, 0.0), train=train)
    assert out.best.is_file() and summary["epochs_run"] == 1

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(144, 2)

        def forward(self, x):
            return self.fc(x.flatten(1))  # 12x12 only

    phase = Phase("head", 1, 1e-2, 1e-2, 0.0)
    with pytest.raises(ValueError, match="cannot take 8 px inputs"):
        fit(Fixed(), phase, _bundle(), train, seed=0, meta={"model": "x"},
            outputs=Outputs(tmp_path / "b.pt", tmp_path / "l.pt", tmp_path / "lv"),
            fingerprint="fp")
    assert not (tmp_path / "b.pt").exists()


def test_live_rows_write_the_same_file_in_any_key_order(tmp_path):
    """kfold replays finished folds from JSON records, whose keys come back sorted; dvclive
    writes metrics.json in logging order, so log_row must fix the order itself."""
    from medclass.train.live import open_live

    row = {"epoch": 0, "val_loss": 0.5, "train_acc": 0.75, "lr_head": 0.01}
    files = []
    for name, r in (("a", row), ("b", dict(sorted(row.items())))):
        open_live(tmp_path / name, [r]).end()
        files.append((tmp_path / name / "metrics.json").read_bytes())
    assert files[0] == files[1]
