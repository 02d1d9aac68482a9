"""DeiT: class + distillation tokens, their two heads, input fitting."""

import pytest
import torch

from medclass.errors import MedclassError
from medclass.models import create_model, head_and_backbone_params
from medclass.models.deit import DeiT, DistilledHead

NAME = "deit"
TINY = {"width": 16, "depth": 2, "heads": 2, "drop_path_rate": 0.1}


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


# --- interface checks shared by every registered backbone (tiny width) ---


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_tiny_forward_interface(size, in_chans):
    torch.manual_seed(0)
    model = create_model(NAME, num_classes=3, in_chans=in_chans, **TINY).eval()
    x = torch.randn(2, in_chans, size, size)
    with torch.no_grad():
        out = model(x)
        feats = model.forward_features(x)
        pooled = model.forward_head(feats, pre_logits=True)
        logits = model.forward_head(feats)
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])
    assert pooled.shape == (2, model.num_features)
    assert torch.allclose(logits, out, atol=1e-5)


def test_tiny_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = create_model(NAME, num_classes=3, **TINY).train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_reset_classifier_and_head_group():
    model = create_model(NAME, num_classes=3, **TINY).eval()
    model.reset_classifier(5)
    assert model.num_classes == 5
    assert model.get_classifier().out_features == 5
    assert model(torch.randn(2, 3, 28, 28)).shape == (2, 5)
    head, backbone = head_and_backbone_params(model)
    assert {id(p) for p in head} == {id(p) for p in model.get_classifier().parameters()}
    assert len(head) + len(backbone) == len(list(model.parameters()))


def test_unknown_kwarg_is_rejected():
    with pytest.raises(MedclassError, match="model_kwargs"):
        create_model(NAME, num_classes=2, bogus=1)


def test_default_width_runs_at_64px():
    torch.manual_seed(0)
    model = create_model(NAME, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 3) and torch.isfinite(out).all()


def test_stochastic_depth_increases_linearly():
    from timm.layers import DropPath

    model = create_model(NAME, num_classes=2, **TINY)
    probs = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    assert probs and probs == sorted(probs)
    assert max(probs) == pytest.approx(0.1)
