"""DualBranchNet: global 7x7 residual branch + local space-to-depth branch, fused."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS
from medclass.models.dual_branch import DualBranchNet, SpaceToDepthConv

NAME = "dual_branch"


def _tiny(in_chans: int = 3, **kw) -> nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY_KWARGS[NAME], **kw})


def test_space_to_depth_keeps_every_pixel():
    x = torch.randn(2, 3, 8, 8)
    s2d = F.pixel_unshuffle(x, 2)
    assert s2d.shape == (2, 12, 4, 4) and torch.equal(F.pixel_shuffle(s2d, 2), x)
    conv = SpaceToDepthConv(3, 16)
    assert conv.conv.conv.in_channels == 12
    assert conv(torch.randn(2, 3, 7, 9)).shape == (2, 16, 4, 5)  # odd sides are padded


@pytest.mark.parametrize("size", [28, 30, 32, 33, 64])
def test_branches_meet_on_the_same_grid(size):
    model = _tiny().eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        g, loc = model.global_branch(x), model.local_branch(x)
        feats = model.forward_features(x)
    side = -(-size // 8)
    assert g.shape[-2:] == loc.shape[-2:] == feats.shape[-2:] == (side, side)
    assert feats.shape[1] == model.num_features == 2 * 64


def test_sum_fusion_and_both_branches_matter():
    model = DualBranchNet(3, width=8, fusion="sum", fuse_dim=24).eval()
    assert model.num_features == 24
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        model.proj_local.bn.weight.zero_()  # silence the local branch's projection
        model.proj_local.bn.bias.zero_()
        assert not torch.allclose(model(x), out)


def test_invalid_configuration_is_clear():
    with pytest.raises(ValueError, match="fusion"):
        DualBranchNet(2, width=8, fusion="max")
    with pytest.raises(ValueError, match="two stages"):
        DualBranchNet(2, dims=(8,))
    with pytest.raises(TypeError, match="width or dims"):
        DualBranchNet(2, width=8, dims=(8, 16))
