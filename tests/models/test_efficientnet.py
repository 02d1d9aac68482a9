"""EfficientNet family: compound scaling, odd-side MBConv shortcuts, generic interface."""

import pytest
import torch
from torch import nn

from medclass.errors import MedclassError
from medclass.models import create_model, get_spec
from medclass.models.efficientnet import B0_STAGES, EfficientNet, mbconv
from medclass.models.layers import DropPath

TINY = {"efficientnet": {"width_mult": 0.1, "depth_mult": 0.25, "head_chs": 32}}


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


def _blocks(model: EfficientNet) -> int:
    return sum(len(stage) for stage in model.features[1:-1])


def test_compound_scaling_of_depth_and_width():
    b0 = sum(r for *_, r in B0_STAGES)
    assert _blocks(EfficientNet(2, width_mult=0.1, head_chs=16)) == b0 == 16
    assert _blocks(EfficientNet(2, width_mult=0.1, depth_mult=2.0, head_chs=16)) == 2 * b0
    assert _blocks(EfficientNet(2, width_mult=0.1, depth_mult=0.25, head_chs=16)) == 7
    narrow = EfficientNet(2, width_mult=0.25, depth_mult=0.25)
    wide = EfficientNet(2, width_mult=0.5, depth_mult=0.25)
    assert (narrow.num_features, wide.num_features) == (320, 640)
    assert narrow.features[0][0].out_channels == 8 and wide.features[0][0].out_channels == 16


@pytest.mark.parametrize("side", [7, 8, 1])
def test_stride2_mbconv_handles_odd_sides(side):
    block = mbconv(8, 16, 2, 6, 5, 0.0).eval()
    out = block(torch.randn(2, 8, side, side))
    assert out.shape == (2, 16, (side + 1) // 2, (side + 1) // 2)


def test_blocks_use_silu_and_squeeze_excite():
    model = _tiny("efficientnet")
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"SiLU", "SqueezeExcite", "MBConv"} <= kinds and "ReLU" not in kinds


def test_stem_stride_one_keeps_more_resolution():
    model = _tiny("efficientnet", stem_stride=1).eval()
    assert model.forward_features(torch.randn(1, 3, 28, 28)).shape[-2:] == (2, 2)
    with pytest.raises(MedclassError, match="stem_stride"):
        _tiny("efficientnet", stem_stride=4)
