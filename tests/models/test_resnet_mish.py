"""ResNet-Mish family: Mish bottlenecks, zero-init residuals, stems, generic interface."""

import pytest
import torch
from torch import nn

from medclass.errors import MedclassError
from medclass.models import create_model, get_spec
from medclass.models.layers import DropPath
from medclass.models.resnet_mish import MishBottleneck

TINY = {"resnet_mish": {"width": 4, "depths": (1, 1, 1, 1)}}


def _tiny(name: str, in_chans: int = 3, **kw) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=3, in_chans=in_chans, **TINY[name], **kw)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("size", [28, 32])
def test_tiny_interface(name, in_chans, size):
    model = _tiny(name, in_chans).eval()
    x = torch.randn(2, in_chans, size, size)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 3) and torch.isfinite(out).all()
        assert not torch.allclose(out[0], out[1])
        assert not torch.allclose(model(torch.randn_like(x)), out)
        feats = model.forward_features(x)
        assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
        assert torch.allclose(model.forward_head(feats), out, atol=1e-5)
    model.train()
    model(x).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    model.reset_classifier(5)
    assert isinstance(model.get_classifier(), nn.Linear)
    assert model(x).shape == (2, 5) and model.get_classifier().out_features == 5


@pytest.mark.parametrize("name", TINY)
def test_drop_path_increases_linearly_and_unknown_kwarg(name):
    probs = [m.drop_prob for m in _tiny(name, drop_path_rate=0.3).modules()
             if isinstance(m, DropPath)]
    assert probs == sorted(probs) and probs[-1] == pytest.approx(0.3)
    with pytest.raises(TypeError):
        get_spec(name).builder(num_classes=2, bogus=1)


@pytest.mark.parametrize("name", TINY)
def test_default_width_runs_at_64(name):
    model = create_model(name, num_classes=4).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 4)
    spec = get_spec(name)
    assert spec.min_size == 16 and spec.scheduler == "onecycle" and spec.lr_mult == 1.0


def test_bottleneck_shapes_and_mish_only():
    block = MishBottleneck(16, 8, stride=2).eval()
    assert block(torch.randn(2, 16, 7, 7)).shape == (2, 32, 4, 4)
    kinds = {type(m).__name__ for m in _tiny("resnet_mish").modules()}
    assert "Mish" in kinds and "ReLU" not in kinds


def test_zero_init_residual_makes_blocks_start_as_shortcut():
    block = MishBottleneck(32, 8).eval()
    x = torch.randn(2, 32, 5, 5)
    assert torch.allclose(block(x), nn.functional.mish(x))
    model = _tiny("resnet_mish").eval()
    with torch.no_grad():
        a, b = model(torch.randn(2, 3, 32, 32))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize(("stem_stride", "side"), [(4, 1), (2, 2), (1, 4)])
def test_stem_stride_sets_final_resolution(stem_stride, side):
    model = _tiny("resnet_mish", stem_stride=stem_stride).eval()
    assert model.forward_features(torch.randn(1, 3, 28, 28)).shape[-2:] == (side, side)


def test_default_layout_is_resnet50_half_width():
    model = create_model("resnet_mish", num_classes=2)
    assert [len(s) for s in model.features[1:]] == [3, 4, 6, 3]
    assert model.num_features == 1024
    with pytest.raises(MedclassError, match="stem_stride"):
        _tiny("resnet_mish", stem_stride=3)
