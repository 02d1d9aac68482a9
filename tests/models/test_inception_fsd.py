"""InceptionFSD: residual Inception modules + local/mid/global pyramid fusion."""

import pytest
import torch
from torch import nn

from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS
from medclass.models.inception_fsd import InceptionFSD, InceptionModule

NAME = "inception_fsd"


def _tiny(in_chans: int = 3, **kw) -> nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY_KWARGS[NAME], **kw})


def test_inception_module_branches_and_shape():
    mod = InceptionModule(8, 32)
    assert [m.kernel_size for m in mod.b5.modules() if isinstance(m, nn.Conv2d)] == [
        (1, 1), (3, 3), (3, 3)]  # 5x5 factorised into two 3x3
    y = mod(torch.randn(2, 8, 7, 7))
    assert y.shape == (2, 32, 7, 7) and (y >= 0).all()
    assert isinstance(InceptionModule(16, 16).short, nn.Identity)


@pytest.mark.parametrize("size", [16, 28, 32, 64])
def test_pyramid_map_has_a_fixed_grid(size):
    model = _tiny().eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, size, size))
    assert feats.shape == (2, 16, 4, 4)
    assert model.fusion_mlp[2].in_features == 16 * 4 * 4 and model.num_features == 16


def test_each_pyramid_level_reaches_the_fused_map():
    model = _tiny().eval()
    fuse_w = model.fuse.conv.weight  # (fuse_dim, local + mid + global, 1, 1)
    assert fuse_w.shape[1] == sum(s[-1].b1.conv.out_channels * 4 for s in model.stages)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model.forward_features(x)
        for lo, hi in [(0, 8), (8, 24), (24, 56)]:  # local, mid and global channel blocks
            saved = fuse_w[:, lo:hi].clone()
            fuse_w[:, lo:hi] = 0
            assert not torch.allclose(model.forward_features(x), ref)
            fuse_w[:, lo:hi] = saved


def test_invalid_configuration_is_clear():
    with pytest.raises(ValueError, match="grid"):
        InceptionFSD(2, width=4, grid=3)
    with pytest.raises(ValueError, match="3 entries"):
        InceptionFSD(2, dims=(8, 16))
    with pytest.raises(TypeError, match="width or dims"):
        InceptionFSD(2, width=4, dims=(8, 16, 32))
