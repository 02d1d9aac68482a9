"""DilatedGroupConvNet: dilated 7x7 group-conv residual blocks (rates 1-2-4), no pooling."""

import pytest
import torch
from torch import nn

from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS
from medclass.models.dilated_groupconv import DilatedGroupBlock, DilatedGroupConvNet

NAME = "dilated_groupconv"


def _tiny(in_chans: int = 3, **kw) -> nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY_KWARGS[NAME], **kw})


@pytest.mark.parametrize("dilation", [1, 2, 4])
def test_block_keeps_shape_with_dilated_group_conv(dilation):
    block = DilatedGroupBlock(32, dilation, group_width=8)
    conv = block.block[1].conv
    assert conv.kernel_size == (7, 7) and conv.dilation == (dilation, dilation)
    assert conv.groups == 2 and conv.in_channels == 16  # bottleneck 0.5, groups of 8
    assert block(torch.randn(2, 32, 7, 7)).shape == (2, 32, 7, 7)


def test_dilations_cycle_and_no_pooling():
    model = _tiny()
    blocks = [m for m in model.modules() if isinstance(m, DilatedGroupBlock)]
    assert [b.block[1].conv.dilation[0] for b in blocks] == [1, 2, 4] * 3
    assert not any(isinstance(m, nn.MaxPool2d | nn.AvgPool2d | nn.AdaptiveAvgPool2d)
                   for m in model.modules())
    strided = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == 2 and all(m.kernel_size == (3, 3) for m in strided)


@pytest.mark.parametrize(("size", "out"), [(16, 4), (28, 7), (32, 8), (224, 56)])
def test_feature_map_is_side_over_4(size, out):
    model = _tiny().eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, size, size))
    assert feats.shape == (1, 32, out, out) and model.num_features == 32


def test_invalid_configuration_is_clear():
    with pytest.raises(ValueError, match="kernel_size"):
        DilatedGroupConvNet(2, width=8, kernel_size=6)
    with pytest.raises(ValueError, match="depths"):
        DilatedGroupConvNet(2, dims=(8, 16), depths=(1,))
    with pytest.raises(TypeError, match="width or dims"):
        DilatedGroupConvNet(2, width=8, dims=(8, 16))
