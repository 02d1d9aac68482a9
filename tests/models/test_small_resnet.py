"""SmallResNet: 7x7 residual blocks, stride-2 stages, any input side."""

import pytest
import torch
from torch import nn

from medclass.models import create_model, get_spec
from medclass.models.layers import DropPath
from medclass.models.small_resnet import ResBlock7, SmallResNet

TINY = {"small_resnet": {"width": 8}}


def _tiny(name: str, in_chans: int = 3, **kw) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=3, in_chans=in_chans, **{**TINY[name], **kw})


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
    assert spec.default_size == 32 and spec.scheduler == "onecycle" and spec.lr_mult == 1.0


def test_res_block_shapes_and_kernel():
    block = ResBlock7(8, 16, stride=2)
    assert block.branch[0][0].kernel_size == (7, 7) and block.branch[1][0].kernel_size == (7, 7)
    assert block(torch.randn(2, 8, 7, 7)).shape == (2, 16, 4, 4)  # ceil halving, odd sides
    same = ResBlock7(8, 8)
    assert isinstance(same.short, nn.Identity)
    assert same(torch.randn(2, 8, 5, 6)).shape == (2, 8, 5, 6)


@pytest.mark.parametrize(("size", "out"), [(28, 4), (32, 4), (64, 8), (224, 28)])
def test_feature_map_is_side_over_8(size, out):
    model = _tiny("small_resnet").eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, size, size))
    assert feats.shape == (1, 64, out, out) and model.num_features == 64


def test_dims_depths_and_invalid_configuration():
    model = SmallResNet(2, dims=(8, 16), depths=(2, 1))
    assert sum(isinstance(m, ResBlock7) for m in model.modules()) == 3
    with pytest.raises(TypeError, match="width or dims"):
        SmallResNet(2, width=8, dims=(8, 16))
    with pytest.raises(ValueError, match="equal length"):
        SmallResNet(2, dims=(8, 16), depths=(1,))
    with pytest.raises(ValueError, match="kernel_size"):
        SmallResNet(2, width=8, kernel_size=4)
