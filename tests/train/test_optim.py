"""Optimiser parameter groups, LR schedules and losses."""

import copy
import math

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


@pytest.mark.parametrize("name,exempt", [
    ("deit", {"cls_token", "dist_token", "pos_embed"}),
    ("vit_hybrid", {"cls_token", "pos_embed"}),
    ("swin", {"table"}), ("coatnet", {"table"}), ("maxvit", {"table"}),
])
def test_tokens_position_embeddings_and_bias_tables_get_no_weight_decay(name, exempt):
    from medclass.models.checks import TINY_KWARGS

    model = create_model(name, num_classes=3, in_chans=1, **TINY_KWARGS.get(name, {}))
    opt = build_optimizer(model, head_lr=1e-3, backbone_lr=1e-4, weight_decay=0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    exempted = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0
                for p in g["params"] if p.ndim >= 2}
    assert exempted and {n.rsplit(".", 1)[-1] for n in exempted} == exempt
    assert not any(n.rsplit(".", 1)[-1] in exempt for n in decayed)
    assert any(n.endswith("weight") for n in decayed)  # ordinary weights still decay


def test_timm_no_weight_decay_names_are_honoured():
    timm = pytest.importorskip("timm")
    from medclass.train.optim import no_weight_decay_ids

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=2)
    wrapper = torch.nn.Sequential(vit)  # found on any submodule, names relative to it
    ids = no_weight_decay_ids(wrapper)
    assert ids == {id(vit.pos_embed), id(vit.cls_token)}


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


def test_layer_decay_lrs_fall_geometrically_from_the_last_block():
    model = create_model("simple_cnn", num_classes=3, in_chans=1)
    opt = build_optimizer(model, head_lr=1e-2, backbone_lr=1e-3, weight_decay=0.05,
                          layer_decay=0.5)
    g = _groups(opt)
    assert g["head"]["lr"] == 1e-2
    blocks = sorted((n for n in g if n.startswith("backbone.") and "no_decay" not in n),
                    key=lambda n: int(n.split(".")[1]))
    lrs = [g[n]["lr"] for n in blocks]
    assert len(lrs) == 4 and lrs[-1] == pytest.approx(1e-3)
    for lower, upper in zip(lrs, lrs[1:], strict=False):
        assert lower == pytest.approx(upper * 0.5)
    n_opt = sum(len(x["params"]) for x in opt.param_groups)
    assert n_opt == len(list(model.parameters()))


def _params(**over):
    from medclass.config import Params

    return Params.model_validate(over)


@pytest.mark.parametrize(("model", "pretrained", "mult", "sched"), [
    ("swin", "none", 0.5, "cosine"),
    ("small_resnet", "none", 1.0, "onecycle"),
    ("timm/resnet18", "weights/resnet18.pth", 0.1, "onecycle"),
    ("timm/vit_tiny_patch16_224", "none", 0.5, "cosine"),
])
def test_auto_finetune_defaults_come_from_the_registry(model, pretrained, mult, sched):
    from medclass.train.phases import finetune_phase

    params = _params(model=model, train={"pretrained": pretrained})
    phase = finetune_phase(params)
    assert phase.backbone_lr == pytest.approx(params.finetune.lr * mult)
    assert phase.scheduler == sched and phase.layer_decay is None


def test_explicit_finetune_settings_override_the_registry():
    from medclass.train.phases import finetune_phase

    params = _params(model="swin", finetune={"backbone_lr_mult": 2.0, "scheduler": "constant",
                                             "strategy": "layer_decay", "layer_decay": 0.6})
    phase = finetune_phase(params)
    assert phase.backbone_lr == pytest.approx(params.finetune.lr * 2.0)
    assert phase.scheduler == "constant" and phase.layer_decay == 0.6


@pytest.mark.parametrize("bad", [{"backbone_lr_mult": "fast"}, {"backbone_lr_mult": 0},
                                 {"layer_decay": 1.5}, {"strategy": "gradual_x"}])
def test_bad_finetune_settings_are_refused(bad):
    from medclass.config import parse_params
    from medclass.errors import MedclassError

    with pytest.raises(MedclassError, match="finetune"):
        parse_params({"finetune": bad})


def test_multistep_drops_by_gamma_at_epoch_fractions():
    lrs = _lrs("multistep", milestones=(0.5, 0.75), gamma=0.1)  # 4 epochs x 5 steps
    assert lrs[:10] == [1.0] * 10
    assert lrs[10:15] == pytest.approx([0.1] * 5)
    assert lrs[15:] == pytest.approx([0.01] * 5)


def _closed_form(kind, step, *, epochs, steps_per_epoch, warmup_epochs=0, min_lr_ratio=0.0,
                 milestones=(0.5, 0.75), gamma=0.1):
    """The documented LR factor at ``step``: warmup (s + 1) / (w + 1), then constant, MedMNIST
    multistep or cosine to ``min_lr_ratio`` (held after the last step)."""
    total = max(1, epochs * steps_per_epoch)
    warmup = min(total - 1, warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if kind == "constant":
        return 1.0
    if kind == "multistep":
        return gamma ** sum(step // steps_per_epoch >= int(m * epochs) for m in milestones)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


SCHEDULE_CASES = [  # epochs, steps/epoch, warmup epochs, min ratio, milestones, gamma
    (4, 5, 1, 0.1, (0.5, 0.75), 0.1), (4, 5, 0, 0.0, (0.5, 0.75), 0.1),
    (6, 3, 2, 0.01, (0.1, 0.5, 0.9), 0.5), (1, 1, 0, 0.0, (0.5,), 0.1),
    (1, 1, 3, 0.2, (0.5,), 0.1), (3, 7, 5, 0.05, (0.2, 0.34, 0.67), 0.3),
    (2, 1, 1, 0.3, (0.5,), 0.1), (3, 4, 0, 0.0, (0.25, 0.5, 0.5), 0.2),  # milestone at step 0
    (1, 6, 1, 0.0, (0.5, 0.75), 0.1), (12, 2, 1, 0.01, (0.5, 0.75), 0.1),
]


@pytest.mark.parametrize("kind", ["cosine", "constant", "multistep"])
@pytest.mark.parametrize("case", SCHEDULE_CASES, ids=lambda c: "-".join(map(str, c[:4])))
def test_schedules_follow_the_closed_form_per_step_and_per_group(kind, case):
    epochs, spe, warmup, ratio, milestones, gamma = case
    kw = dict(epochs=epochs, steps_per_epoch=spe, warmup_epochs=warmup, min_lr_ratio=ratio,
              milestones=milestones, gamma=gamma)
    p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([{"params": [p], "lr": 1e-3}, {"params": [q], "lr": 3e-5}])
    sched = build_scheduler(opt, kind, **kw)
    for step in range(epochs * spe + 3):  # a few steps past the end too
        want = _closed_form(kind, step, **kw)
        got = [g["lr"] for g in opt.param_groups]
        assert got == pytest.approx([1e-3 * want, 3e-5 * want], rel=1e-12, abs=0), step
        assert sched.last_epoch == step  # EMA reads the step count from here
        opt.step()
        sched.step()


@pytest.mark.parametrize("kind", ["cosine", "constant", "multistep", "onecycle"])
def test_schedule_resumes_from_its_state_dict(kind):
    """``fit`` saves and reloads the scheduler: a resumed run continues the same curve."""
    def make():
        p = torch.nn.Parameter(torch.zeros(2))
        opt = torch.optim.AdamW([{"params": [p], "lr": 1.0}])
        return opt, build_scheduler(opt, kind, epochs=4, steps_per_epoch=5, warmup_epochs=1,
                                    min_lr_ratio=0.1)

    opt, sched = make()
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        if len(lrs) == 7:
            state = (copy.deepcopy(opt.state_dict()), copy.deepcopy(sched.state_dict()))
    opt2, sched2 = make()
    opt2.load_state_dict(state[0])
    sched2.load_state_dict(state[1])
    resumed = []
    for _ in range(13):
        resumed.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert resumed == pytest.approx(lrs[7:], rel=1e-12)
