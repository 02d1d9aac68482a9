"""DeiT: class + distillation tokens, their two heads, input fitting."""

import pytest
import torch

from medclass.models import head_and_backbone_params
from medclass.models.checks import TINY_KWARGS
from medclass.models.deit import DeiT, DistilledHead

NAME = "deit"
TINY = {**TINY_KWARGS[NAME], "drop_path_rate": 0.1}


def test_head_group_holds_both_heads():
    model = DeiT(3, **TINY)
    head = model.get_classifier()
    assert isinstance(head, DistilledHead)
    assert (head.in_features, head.out_features) == (16, 3)
    head_params, _ = head_and_backbone_params(model)
    expected = [head.head.weight, head.head.bias, head.head_dist.weight, head.head_dist.bias]
    assert {id(p) for p in head_params} == {id(p) for p in expected}


def test_eval_output_is_mean_of_both_heads():
    torch.manual_seed(0)
    model = DeiT(3, **TINY).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, 32, 32))
        cls_logits, dist_logits = model.get_classifier()(feats[:, 0], feats[:, 1])
        out = model.forward_head(feats)
    assert not torch.allclose(cls_logits, dist_logits)
    assert torch.allclose(out, (cls_logits + dist_logits) / 2)
    assert torch.allclose(model.forward_head(feats, pre_logits=True), feats[:, :2].mean(1))


def test_distilled_training_returns_both_heads_in_train_mode_only():
    model = DeiT(3, **TINY)
    model.set_distilled_training(True)
    x = torch.randn(2, 3, 28, 28)
    cls_logits, dist_logits = model.train()(x)
    assert cls_logits.shape == dist_logits.shape == (2, 3)
    assert model.eval()(x).shape == (2, 3)


def test_reset_classifier_replaces_both_heads():
    model = DeiT(3, **TINY)
    old = model.get_classifier()
    model.reset_classifier(7)
    assert model.get_classifier() is not old
    assert model.get_classifier().head_dist.out_features == 7


@pytest.mark.parametrize(("size", "tokens"), [(16, 49), (28, 49), (112, 49), (120, 64)])
def test_small_inputs_are_upsampled_odd_ones_padded(size, tokens):
    model = DeiT(2, **TINY).eval()
    assert model.fit_input(torch.randn(1, 3, size, size)).shape[-1] in (112, 128)
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, size, size)).shape[1] == 2 + tokens


# --- head group, option validation and stochastic depth ---
