"""finetune.strategy gradual/partial: frozen layer groups per epoch, fixed weights and BN stats,
the optimizer holding every parameter, and resume recomputing the frozen set."""

import numpy as np
import pytest
import torch

import medclass.train.loop as loop
from medclass.config import TrainParams, parse_params
from medclass.data.bundle import DataBundle
from medclass.data.dataset import CachedDataset
from medclass.errors import MedclassError
from medclass.io import load_checkpoint
from medclass.models import create_model, layer_groups
from medclass.train.freezing import LayerFreezer
from medclass.train.loop import Outputs, Phase, fit
from medclass.train.phases import finetune_phase

TRAIN = TrainParams(batch_size=16, progress=False, augment="none", label_smoothing=0.0)
# simple_cnn_tiny: 3 layer groups (stem, block 1, block 2) + the fc head
GROUP_PREFIX = ("features.0.", "features.1.", "features.2.")


@pytest.fixture(autouse=True)
def _outside_any_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _bundle(n=48, size=12):
    rng = np.random.default_rng(0)

    def make(k):
        x = rng.integers(0, 255, size=(k, 1, size, size), dtype=np.uint8)
        return CachedDataset(x, np.arange(k) % 2)

    stats = {"mean": [0.5], "std": [0.3], "channels": 1, "image_size": size, "classes": ["a", "b"]}
    return DataBundle(["a", "b"], stats, {"train": make(n), "val": make(16)})


def _model():
    torch.manual_seed(0)
    return create_model("simple_cnn_tiny", num_classes=2, in_chans=1)


def _run(root, phase, model=None):
    model = model or _model()
    out = Outputs(root / "best.pt", root / "last.pt", root / "live")
    summary = fit(model, phase, _bundle(), TRAIN, seed=0, meta={}, outputs=out, fingerprint="fp")
    return summary, out


def _phase(**kw):
    return Phase("finetune", epochs=kw.pop("epochs", 3), head_lr=3e-3, backbone_lr=3e-3,
                 weight_decay=0.05, **kw)


def _spy_trainable(monkeypatch):
    """Per epoch: which of the 3 groups (and the head) had requires_grad, and the optimizer."""
    real, seen = loop.train_one_epoch, []

    def spy(model, loader, transform, criterion, optimizer, *args, **kwargs):
        groups = layer_groups(model)
        seen.append(([all(p.requires_grad for p in g) for g in groups]
                     + [all(p.requires_grad for p in model.get_classifier().parameters())],
                     sum(len(g["params"]) for g in optimizer.param_groups)))
        assert all(any(p.requires_grad for p in g) == all(p.requires_grad for p in g)
                   for g in groups)  # a group is frozen or trains as a whole
        return real(model, loader, transform, criterion, optimizer, *args, **kwargs)

    monkeypatch.setattr(loop, "train_one_epoch", spy)
    return seen


def test_gradual_unfreezes_one_group_at_each_listed_epoch(tmp_path, monkeypatch):
    seen = _spy_trainable(monkeypatch)
    _run(tmp_path, _phase(epochs=4, unfreeze_epochs=(1, 3)))
    n_params = len(list(_model().parameters()))
    assert [s[0] for s in seen] == [
        [False, False, False, True],  # epoch 0: the head alone
        [False, False, True, True],   # epoch 1: + the last block
        [False, False, True, True],
        [False, True, True, True],    # epoch 3: + the block before; the stem stays frozen
    ]
    assert all(s[1] == n_params for s in seen)  # the optimizer holds every parameter throughout


def test_partial_keeps_the_first_groups_bit_identical(tmp_path):
    before = _model().state_dict()
    _, out = _run(tmp_path, _phase(epochs=1, freeze_stages=2))
    after = load_checkpoint(out.best)["model"]
    for k, v in before.items():
        if k.startswith(GROUP_PREFIX[:2]):  # weights, BN affine and BN running statistics
            assert torch.equal(v, after[k]), k
        elif k.startswith((GROUP_PREFIX[2], "fc.")) and not k.endswith("num_batches_tracked"):
            assert not torch.equal(v, after[k]), k


def test_resume_recomputes_the_frozen_groups(tmp_path, interrupt_at):
    phase = _phase(epochs=3, unfreeze_epochs=(1, 2))
    full, full_out = _run(tmp_path / "a", phase)
    interrupt_at(lambda: _run(tmp_path / "b", phase), 3)
    resumed, res_out = _run(tmp_path / "b", phase)  # a fresh model: all groups trainable
    assert resumed == full
    a, b = load_checkpoint(full_out.best)["model"], load_checkpoint(res_out.best)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_freezer_refuses_more_groups_than_the_model_has():
    model = _model()
    with pytest.raises(MedclassError, match="finetune.unfreeze_epochs: 4 epochs listed"):
        LayerFreezer(model, unfreeze_epochs=(1, 2, 3, 4))
    with pytest.raises(MedclassError, match="finetune.freeze_stages: 3 freezes all 3"):
        LayerFreezer(model, freeze_stages=3)
    assert LayerFreezer(model, freeze_stages=2).frozen_at(7) == 2


def test_strategy_params_reach_the_phase_and_are_validated():
    def phase(**ft):
        return finetune_phase(parse_params({"finetune": ft}))

    p = phase(strategy="gradual", unfreeze_epochs=[0, 2])
    assert p.unfreeze_epochs == (0, 2) and p.freeze_stages == 0
    p = phase(strategy="partial", freeze_stages=2)
    assert p.freeze_stages == 2 and p.unfreeze_epochs == ()
    p = phase(strategy="full")
    assert p.freeze_stages == 0 and p.unfreeze_epochs == () and p.layer_decay is None
    with pytest.raises(MedclassError, match="finetune.unfreeze_epochs: .*strictly increasing"):
        parse_params({"finetune": {"unfreeze_epochs": [2, 2]}})
    with pytest.raises(MedclassError, match="finetune.strategy: gradual .*DDP"):
        parse_params({"finetune": {"strategy": "gradual"}, "train": {"nproc_per_node": 2}})
    parse_params({"finetune": {"strategy": "partial"}, "train": {"nproc_per_node": 2}})
