"""CSPDarknet family: cross-stage-partial split, activations."""

import pytest
import torch
from torch import nn

from medclass.errors import MedclassError
from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS
from medclass.models.cspdarknet import CSPStage, DarkBlock

NAME = "cspdarknet"


def _tiny(in_chans: int = 3, **kw) -> nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY_KWARGS[NAME], **kw})


def test_stage_splits_into_partial_halves():
    stage = CSPStage(8, 16, depth=2, stride=2, act=nn.Mish, drop_paths=[0.0, 0.0]).eval()
    x = torch.randn(2, 8, 7, 7)
    assert stage(x).shape == (2, 16, 4, 4)
    assert stage.split_skip.conv.out_channels == stage.split_main.conv.out_channels == 8
    assert all(b.conv1.conv.in_channels == 8 for b in stage.blocks) and len(stage.blocks) == 2
    # the skip half reaches the fusion without passing the Darknet blocks
    down = stage.down(x)
    skip = stage.split_skip(down)
    main = stage.transition(stage.blocks(stage.split_main(down)))
    assert torch.allclose(stage(x), stage.fuse(torch.cat([skip, main], 1)))


def test_dark_block_is_residual():
    block = DarkBlock(8, 4, nn.Mish).eval()
    x = torch.randn(2, 8, 5, 5)
    assert torch.allclose(block(x) - x, block.conv2(block.conv1(x)), atol=1e-6)


def test_activation_choice():
    leaky = {type(m).__name__ for m in _tiny().modules()}
    mish = {type(m).__name__ for m in _tiny(act="mish").modules()}
    assert "_Leaky" in leaky and "Mish" not in leaky
    assert "Mish" in mish and "_Leaky" not in mish
    with pytest.raises(MedclassError, match="act must be"):
        _tiny(act="relu")


@pytest.mark.parametrize(("stem_stride", "side"), [(2, 1), (1, 2)])
def test_stem_stride_sets_final_resolution(stem_stride, side):
    model = _tiny(stem_stride=stem_stride).eval()
    assert model.forward_features(torch.randn(1, 3, 28, 28)).shape[-2:] == (side, side)
    assert model.forward_features(torch.randn(1, 3, 64, 64)).shape[-2:] == (2 * side, 2 * side)
