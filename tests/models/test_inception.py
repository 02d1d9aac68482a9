"""Inception-v4-style backbone: block shapes, aux-head contract, small inputs."""

import pytest
import torch
import torch.nn.functional as F

from medclass.errors import MedclassError
from medclass.models import create_model
from medclass.models.inception import Inception, inception_a, inception_b, inception_c

NAME = "inception"
TINY = {"width": 1, "depths": (1, 1, 1)}


# ---- generic checks for every registered name at a tiny width ----------------------------


def _tiny(in_chans: int = 3, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY, **kw})


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_forward_shapes_and_input_dependence(size, in_chans):
    model = _tiny(in_chans).eval()
    x1, x2 = torch.randn(2, 2, in_chans, size, size)
    with torch.no_grad():
        out1, out2 = model(x1), model(x2)
        pooled = model.forward_head(model.forward_features(x1), pre_logits=True)
        via_head = model.forward_head(model.forward_features(x1))
    assert out1.shape == (2, 3)
    assert torch.isfinite(out1).all() and torch.isfinite(out2).all()
    assert not torch.allclose(out1, out2)
    assert pooled.shape == (2, model.num_features)
    assert torch.allclose(via_head, out1, atol=1e-5)


def test_backward_reaches_every_parameter():
    model = _tiny(3, drop_path_rate=0.1).train()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    loss = F.cross_entropy(model(x), y)
    assert model.aux_logits is not None
    loss = loss + model.aux_loss_weight * F.cross_entropy(model.aux_logits, y)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def test_reset_classifier():
    model = _tiny(1).eval()
    model.reset_classifier(5)
    assert model.get_classifier().out_features == 5
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 5)


def test_unknown_kwarg_is_rejected():
    with pytest.raises(MedclassError, match="model_kwargs"):
        create_model(NAME, num_classes=2, bogus=1)


def test_default_width_runs_at_64px():
    torch.manual_seed(0)
    model = create_model(NAME, num_classes=4, in_chans=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 4) and torch.isfinite(out).all()


# ---- family-specific checks ---------------------------------------------------------


@pytest.mark.parametrize("block, ch", [(inception_a, 12), (inception_b, 32), (inception_c, 48)])
def test_inception_blocks_keep_shape(block, ch):
    x = torch.randn(2, ch * 2, 5, 5)
    assert block(2, 0.0)(x).shape == x.shape


@pytest.mark.parametrize("size, side", [(28, 2), (32, 2), (63, 4), (64, 2), (96, 3)])
def test_small_inputs_skip_the_first_stem_stride(size, side):
    model = _tiny(3).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, size, size))
    assert feats.shape == (1, model.num_features, side, side)


def test_aux_head_contract():
    model = _tiny(3).train()
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3)
    assert model.aux_loss_weight == 0.4
    assert model.aux_logits.shape == (2, 3) and model.aux_logits.requires_grad
    logits, aux = model.forward_with_aux(x)
    assert logits.shape == aux.shape == (2, 3)
    model.eval()
    with torch.no_grad():
        model(x)
    assert model.aux_logits is None
    assert model.forward_with_aux(x)[1] is None


def test_aux_head_can_be_disabled():
    model = _tiny(3, aux_head=False).train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert model.aux is None and model.aux_logits is None
    assert all(p.grad is not None for p in model.parameters())


def test_reset_classifier_resets_aux_head():
    model = _tiny(3).train()
    model.reset_classifier(7)
    model(torch.randn(2, 3, 32, 32))
    assert model.aux_logits.shape == (2, 7)


def test_stochastic_depth_increases_over_blocks():
    model = Inception(3, width=1, depths=(2, 2, 2), drop_path_rate=0.3)
    probs = [b.drop_path.drop_prob for s in (model.stage_a, model.stage_b, model.stage_c)
             for b in s if hasattr(b.drop_path, "drop_prob")]
    assert probs == sorted(probs) and probs[-1] == pytest.approx(0.3)


def test_invalid_config_is_a_clear_error():
    with pytest.raises(ValueError, match="depths"):
        Inception(3, depths=(1, 1))
