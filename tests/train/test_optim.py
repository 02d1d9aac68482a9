"""Optimiser parameter groups, LR schedules and losses."""

import numpy as np
import pytest
import torch

from medclass.models import create_model
from medclass.train.losses import build_criterion, class_weights
from medclass.train.optim import build_optimizer, build_scheduler


def _groups(opt):
    return {g["name"]: g for g in opt.param_groups}


def test_differential_lrs_and_no_decay_on_norms_and_biases():
    model = create_model("simple_cnn_tiny", num_classes=3, in_chans=1)
    opt = build_optimizer(model, head_lr=1e-3, backbone_lr=1e-4, weight_decay=0.05)
    g = _groups(opt)
    assert g["head"]["lr"] == 1e-3 and g["backbone"]["lr"] == 1e-4
    assert g["backbone_no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim < 2 for p in g["backbone_no_decay"]["params"])
    n_opt = sum(len(x["params"]) for x in opt.param_groups)
    assert n_opt == len(list(model.parameters()))


def test_frozen_backbone_optimises_only_the_head():
    model = create_model("simple_cnn_tiny", num_classes=3, in_chans=1)
    opt = build_optimizer(model, head_lr=1e-3, backbone_lr=None, weight_decay=0.0)
    assert set(_groups(opt)) <= {"head", "head_no_decay"}


def _lrs(kind, **kw):
    p = torch.nn.Parameter(torch.zeros(2, 2))
    opt = torch.optim.AdamW([{"params": [p], "lr": 1.0}])
    sched = build_scheduler(opt, kind, epochs=4, steps_per_epoch=5, **kw)
    out = []
    for _ in range(20):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine_to_min_ratio():
    lrs = _lrs("cosine", warmup_epochs=1, min_lr_ratio=0.1)
    assert lrs[0] < lrs[4] <= 1.0  # linear warmup over the first epoch
    assert max(lrs) == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:], strict=False))  # monotone decay
    assert lrs[-1] == pytest.approx(0.1, abs=0.02)


def test_constant_and_onecycle():
    assert set(_lrs("constant")) == {1.0}
    one = _lrs("onecycle")
    assert max(one) == pytest.approx(1.0, rel=1e-3) and one[0] < 0.1 and one[-1] < 0.01


def test_balanced_class_weights_from_train_labels():
    w = class_weights(np.array([0, 0, 0, 1]), 2, "balanced")
    assert torch.allclose(w, torch.tensor([4 / 6, 2.0]))
    assert class_weights(np.array([0, 1]), 2, "none") is None


def test_label_smoothing_is_applied():
    crit = build_criterion(np.array([0, 1]), 2, weights_mode="none", label_smoothing=0.2)
    logits = torch.tensor([[10.0, -10.0]])
    plain = torch.nn.functional.cross_entropy(logits, torch.tensor([0]))
    assert crit(logits, torch.tensor([0])) > plain + 1.0
