"""Every registered backbone: verify checks at tiny width, and one train + evaluate step."""

import numpy as np
import pytest
import torch

from medclass.config import TrainParams
from medclass.data.bundle import DataBundle
from medclass.data.dataset import BatchTransform, CachedDataset, make_loader
from medclass.evaluate.metrics import classification_metrics
from medclass.inference import predict_logits
from medclass.models import create_model, get_spec, list_models
from medclass.models.checks import TINY_KWARGS, verify_model
from medclass.train.engine import StepConfig
from medclass.train.loop import Outputs, Phase, fit

NAMES = list_models()


def test_zoo_has_every_family_from_the_issue():
    expected = {
        "convnext", "efficientnet", "ghostnet", "resnet_mish", "cspdarknet", "inception",
        "vit_hybrid", "swin", "coatnet", "regnet", "densenet_hybrid", "deit", "maxvit",
        "mobileone", "dynamic_conv", "densenet7x7", "small_resnet", "dual_branch",
        "inception_fsd", "dilated_groupconv",
    }
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("size", "chans"), [(28, 1), (32, 3)])
def test_verify_passes_at_tiny_width(name, size, chans):
    if size % get_spec(name).size_multiple:
        pytest.skip(f"{name} needs a multiple of {get_spec(name).size_multiple}")
    r = verify_model(name, image_size=size, in_chans=chans, num_classes=3, latency_runs=1,
                     model_kwargs=TINY_KWARGS.get(name, {}))
    assert r["ok"], r.get("error")
    assert r["params_m"] > 0 and r["gflops"] > 0


def test_verify_reports_a_broken_model_instead_of_raising():
    r = verify_model("simple_cnn", image_size=32, model_kwargs={"widths": (8,), "depths": ()})
    assert r["ok"] is False and "model_kwargs" in r["error"]


@pytest.mark.parametrize("name", NAMES)
def test_one_step_train_then_evaluate(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dvclive looks for a repo in the working directory
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(16, 1, 28, 28), dtype=np.uint8)
    y = np.arange(16) % 2
    stats = {"mean": [0.5], "std": [0.25], "channels": 1, "image_size": 28,
             "classes": ["a", "b"]}
    data = DataBundle(["a", "b"], stats, {"train": CachedDataset(x, y),
                                         "val": CachedDataset(x[:8], y[:8])})
    torch.manual_seed(0)
    model = create_model(name, num_classes=2, in_chans=1, **TINY_KWARGS.get(name, {}))
    phase = Phase("t", epochs=1, head_lr=1e-3, backbone_lr=1e-3, weight_decay=0.01)
    train = TrainParams(batch_size=8, progress=False)
    summary = fit(model, phase, data, train, seed=0, meta={"model": name},
                  outputs=Outputs(tmp_path / "b.pt", tmp_path / "l.pt", tmp_path / "live"),
                  fingerprint="x")
    assert summary["epochs_run"] == 1 and np.isfinite(summary["final_train_loss"])
    cfg = StepConfig(torch.device("cpu"), progress=False)
    loader = make_loader(data.splits["val"], 4, shuffle=False)
    logits, labels = predict_logits(model, loader, BatchTransform([0.5], [0.25]), cfg)
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    metrics = classification_metrics(probs, labels, ["a", "b"])
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["n"] == 8


def test_aux_head_loss_is_added_in_training():
    """inception's auxiliary logits exist in train mode only and enter the training loss."""
    from medclass.train.engine import train_one_epoch
    from medclass.train.optim import build_optimizer, build_scheduler

    kw = TINY_KWARGS["inception"]
    model = create_model("inception", num_classes=2, in_chans=1, **kw)
    model.eval()
    model(torch.randn(2, 1, 32, 32))
    assert model.aux_logits is None
    assert model.aux_loss_weight == pytest.approx(0.4)

    x = np.random.default_rng(0).integers(0, 255, size=(4, 1, 32, 32), dtype=np.uint8)
    loader = make_loader(CachedDataset(x, np.array([0, 1, 0, 1])), 4, shuffle=False)
    losses = {}
    for aux in (True, False):
        torch.manual_seed(0)
        m = create_model("inception", num_classes=2, in_chans=1, aux_head=aux, **kw)
        opt = build_optimizer(m, head_lr=0.0, backbone_lr=0.0, weight_decay=0.0)
        sched = build_scheduler(opt, "constant", epochs=1, steps_per_epoch=1)
        out = train_one_epoch(m, loader, BatchTransform([0.5], [0.25]),
                              torch.nn.CrossEntropyLoss(), opt, sched,
                              StepConfig(torch.device("cpu"), progress=False),
                              generator=torch.Generator().manual_seed(0))
        losses[aux] = out["loss"]
    assert losses[True] > losses[False]  # main CE + 0.4 * aux CE
