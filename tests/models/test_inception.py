"""Inception-v4-style backbone: block shapes, aux-head contract, small inputs."""

import pytest
import torch

from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS
from medclass.models.inception import Inception, inception_a, inception_b, inception_c

NAME = "inception"


def _tiny(in_chans: int = 3, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY_KWARGS[NAME], **kw})


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
