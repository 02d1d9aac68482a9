"""EfficientNet family: compound scaling, odd-side MBConv shortcuts."""

import pytest
import torch
from torch import nn

from medclass.errors import MedclassError
from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS
from medclass.models.efficientnet import B0_STAGES, EfficientNet, mbconv

NAME = "efficientnet"


def _tiny(in_chans: int = 3, **kw) -> nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY_KWARGS[NAME], **kw})


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
    assert narrow.features[0].conv.out_channels == 8 and wide.features[0].conv.out_channels == 16


@pytest.mark.parametrize("side", [7, 8, 1])
def test_stride2_mbconv_handles_odd_sides(side):
    block = mbconv(8, 16, 2, 6, 5, 0.0).eval()
    out = block(torch.randn(2, 8, side, side))
    assert out.shape == (2, 16, (side + 1) // 2, (side + 1) // 2)


def test_blocks_use_silu_and_squeeze_excite():
    model = _tiny()
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"SiLU", "SEModule", "MBConv"} <= kinds and "ReLU" not in kinds  # timm SqueezeExcite


def test_stem_stride_one_keeps_more_resolution():
    model = _tiny(stem_stride=1).eval()
    assert model.forward_features(torch.randn(1, 3, 28, 28)).shape[-2:] == (2, 2)
    with pytest.raises(MedclassError, match="stem_stride"):
        _tiny(stem_stride=4)
