"""train.swa: the saved model is the mean of the last epochs' weights, with recomputed BN stats,
an optional constant SWA LR, no early stopping, and an exact resume."""

import numpy as np
import pytest
import torch
from torch import nn

import medclass.train.loop as loop
from medclass.config import TrainParams, parse_params
from medclass.data.bundle import DataBundle
from medclass.data.dataset import CachedDataset
from medclass.errors import MedclassError
from medclass.io import load_checkpoint
from medclass.models import create_model
from medclass.train.loop import Outputs, Phase, fit
from medclass.train.phases import finetune_phase

TRAIN = TrainParams(batch_size=16, progress=False, augment="none", label_smoothing=0.0)


@pytest.fixture(autouse=True)
def _outside_any_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


class NoBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3),
                                      nn.ReLU())
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))

    def get_classifier(self):
        return self.fc


def _bundle(n=48, size=10):
    rng = np.random.default_rng(0)

    def make(k):
        return CachedDataset(rng.integers(0, 255, size=(k, 1, size, size), dtype=np.uint8),
                             np.arange(k) % 2)

    stats = {"mean": [0.5], "std": [0.3], "channels": 1, "image_size": size, "classes": ["a", "b"]}
    return DataBundle(["a", "b"], stats, {"train": make(n), "val": make(16)})


def _phase(epochs=4, **kw):
    return Phase("finetune", epochs=epochs, head_lr=1e-2, backbone_lr=5e-3, weight_decay=0.0,
                 scheduler="cosine", **kw)


def _run(root, phase, model_fn=NoBN):
    torch.manual_seed(0)
    out = Outputs(root / "best.pt", root / "last.pt", root / "live")
    summary = fit(model_fn(), phase, _bundle(), TRAIN, seed=0, meta={}, outputs=out,
                  fingerprint="fp")
    return summary, out


def test_swa_weights_are_the_mean_of_the_averaged_epochs(tmp_path, monkeypatch):
    real, snaps = loop.train_one_epoch, []

    def spy(model, *args, **kwargs):
        out = real(model, *args, **kwargs)
        snaps.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return out

    monkeypatch.setattr(loop, "train_one_epoch", spy)
    summary, out = _run(tmp_path, _phase(epochs=4, swa_start=1))
    best = load_checkpoint(out.best)["model"]
    assert len(snaps) == 4 and summary["swa_epochs"] == 3 and summary["best_epoch"] == 4
    for k, v in best.items():
        mean = torch.stack([s[k] for s in snaps[1:]]).mean(0)
        torch.testing.assert_close(v, mean, rtol=0, atol=1e-6)
    assert any(not torch.allclose(best[k], snaps[-1][k]) for k in best)  # not the raw weights
    assert summary["best_val_loss"] is not None


def test_swa_lr_is_held_constant_and_bn_stats_are_recomputed(tmp_path):
    def model():
        return create_model("simple_cnn_tiny", num_classes=2, in_chans=1)

    summary, out = _run(tmp_path, _phase(epochs=3, swa_start=1, swa_lr=2e-3), model)
    lrs = [r["lr_head"] for r in load_checkpoint(out.last)["history"]]
    assert lrs[1] == pytest.approx(2e-3) and lrs[2] == pytest.approx(2e-3)
    last, best = load_checkpoint(out.last)["model"], load_checkpoint(out.best)["model"]
    key = "features.1.conv1.bn.running_mean"
    assert not torch.equal(best[key], last[key])
    assert int(best["features.1.conv1.bn.num_batches_tracked"]) == 3  # update_bn: 48 / 16 batches


def test_swa_resume_matches_an_uninterrupted_run(tmp_path, interrupt_at):
    phase = _phase(epochs=3, swa_start=1, swa_lr=2e-3)
    full, full_out = _run(tmp_path / "a", phase)
    interrupt_at(lambda: _run(tmp_path / "b", phase), 3)
    resumed, res_out = _run(tmp_path / "b", phase)
    assert resumed == full
    a, b = load_checkpoint(full_out.best)["model"], load_checkpoint(res_out.best)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_swa_params_turn_early_stopping_off_and_refuse_ema():
    params = parse_params({"train": {"swa": {"start_frac": 0.75, "lr": 1e-3}},
                           "finetune": {"epochs": 8, "patience": 2}})
    phase = finetune_phase(params)
    assert (phase.swa_start, phase.swa_lr, phase.patience) == (6, 1e-3, None)
    assert finetune_phase(params, epochs=1).swa_start == 0  # kfold's short phases average too
    off = finetune_phase(parse_params({"train": {"swa": {"lr": 1e-3}}}))
    assert off.swa_start is None and off.swa_lr is None and off.patience is not None
    with pytest.raises(MedclassError, match="train: swa and ema_decay"):
        parse_params({"train": {"swa": {"start_frac": 0.5}, "ema_decay": 0.99}})
    with pytest.raises(MedclassError, match="train.swa.start_frac"):
        parse_params({"train": {"swa": {"start_frac": 1.0}}})
