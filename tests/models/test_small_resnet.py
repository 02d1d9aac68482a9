"""SmallResNet: 7x7 residual blocks, stride-2 stages, any input side."""

import pytest
import torch
from torch import nn

from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS
from medclass.models.small_resnet import ResBlock7, SmallResNet

NAME = "small_resnet"


def _tiny(in_chans: int = 3, **kw) -> nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY_KWARGS[NAME], **kw})


def test_res_block_shapes_and_kernel():
    block = ResBlock7(8, 16, stride=2)
    assert block.branch[0].conv.kernel_size == (7, 7) and block.branch[1].conv.kernel_size == (7, 7)
    assert block(torch.randn(2, 8, 7, 7)).shape == (2, 16, 4, 4)  # ceil halving, odd sides
    same = ResBlock7(8, 8)
    assert isinstance(same.short, nn.Identity)
    assert same(torch.randn(2, 8, 5, 6)).shape == (2, 8, 5, 6)


@pytest.mark.parametrize(("size", "out"), [(28, 4), (32, 4), (64, 8), (224, 28)])
def test_feature_map_is_side_over_8(size, out):
    model = _tiny().eval()
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
