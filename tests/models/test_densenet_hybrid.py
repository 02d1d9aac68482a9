"""DenseNet + transformer tail: dense growth, transitions, token mixing."""

import pytest
import torch
import torch.nn.functional as F

from medclass.errors import MedclassError
from medclass.models import create_model
from medclass.models.densenet_hybrid import DenseLayer, DenseNetHybrid, Transition

NAME = "densenet_hybrid"
TINY = {"growth_rate": 4, "depths": (1, 1, 1, 1), "bn_size": 2, "embed_dim": 16, "num_heads": 2}


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
    model = DenseNetHybrid(3, **TINY).eval()
    t = torch.randn(1, 9, 16)
    t2 = t.clone()
    t2[0, 0] = torch.randn(16)  # (a constant shift would vanish in the LayerNorm)
    with torch.no_grad():
        a, b = model.blocks[0](t), model.blocks[0](t2)
    assert (a[0, -1] - b[0, -1]).abs().max() > 1e-6  # a far token sees the change (attention)


def test_head_count_must_divide_embed_dim():
    with pytest.raises(ValueError, match="num_heads"):
        DenseNetHybrid(3, embed_dim=10, num_heads=4)
