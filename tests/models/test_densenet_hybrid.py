"""DenseNet + transformer tail: dense growth, transitions, token mixing."""

import pytest
import torch

from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS
from medclass.models.densenet_hybrid import DenseLayer, DenseNetHybrid, Transition

NAME = "densenet_hybrid"


def _tiny(in_chans: int = 3, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY_KWARGS[NAME], **kw})


def test_dense_layer_adds_growth_channels_and_keeps_input():
    layer = DenseLayer(6, 4, 2, 0.0)
    x = torch.randn(2, 6, 5, 5)
    out = layer(x)
    assert out.shape == (2, 10, 5, 5) and torch.equal(out[:, :6], x)


def test_transition_compresses_and_halves_odd_sides():
    assert Transition(8, 4)(torch.randn(2, 8, 7, 7)).shape == (2, 4, 4, 4)


@pytest.mark.parametrize("size, side", [(28, 2), (32, 2), (64, 2), (224, 7)])
def test_token_grid(size, side):
    model = _tiny(3).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, size, size))
    assert feats.shape == (1, 16, side, side)


def test_transformer_tail_mixes_all_tokens():
    model = DenseNetHybrid(3, **TINY_KWARGS[NAME]).eval()
    t = torch.randn(1, 9, 16)
    t2 = t.clone()
    t2[0, 0] = torch.randn(16)  # (a constant shift would vanish in the LayerNorm)
    with torch.no_grad():
        a, b = model.blocks[0](t), model.blocks[0](t2)
    assert (a[0, -1] - b[0, -1]).abs().max() > 1e-6  # a far token sees the change (attention)


def test_head_count_must_divide_embed_dim():
    with pytest.raises(ValueError, match="num_heads"):
        DenseNetHybrid(3, embed_dim=10, num_heads=4)
