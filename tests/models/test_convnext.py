"""ConvNeXt family: padding stem/downsampling, block structure, head norm."""

import pytest
import torch
from torch import nn

from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS
from medclass.models.convnext import ConvNeXtBlock, Downsample, Stem, pad_to_multiple

NAME = "convnext"


def _tiny(in_chans: int = 3, **kw) -> nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY_KWARGS[NAME], **kw})


def test_pad_to_multiple():
    x = torch.ones(1, 1, 5, 6)
    y = pad_to_multiple(x, 4)
    assert y.shape == (1, 1, 8, 8) and y.sum() == 30
    assert pad_to_multiple(x, 1) is x


@pytest.mark.parametrize(("size", "side"), [(16, 1), (28, 1), (30, 1), (33, 2), (64, 2)])
def test_odd_and_small_sides_downsample_by_ceil(size, side):
    model = _tiny().eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, size, size)).shape[-2:] == (side, side)


def test_patch_size_controls_resolution():
    x = torch.randn(1, 3, 28, 28)
    assert Stem(3, 8, 4)(x).shape == (1, 8, 7, 7)
    assert Stem(3, 8, 2)(x).shape == (1, 8, 14, 14)
    assert Downsample(8, 16)(torch.randn(1, 8, 7, 7)).shape == (1, 16, 4, 4)
    model = _tiny(patch_size=2).eval()
    assert model.forward_features(x).shape[-2:] == (2, 2)


def test_block_starts_near_identity_via_layer_scale():
    block = ConvNeXtBlock(8, ls_init=1e-6).eval()
    x = torch.randn(2, 8, 5, 5)
    y = block(x)
    assert y.shape == x.shape and torch.allclose(y, x, atol=1e-4) and not torch.equal(y, x)


def test_pre_logits_are_layer_normed():
    model = _tiny().eval()
    with torch.no_grad():
        z = model.forward_head(model.forward_features(torch.randn(2, 3, 32, 32)), True)
    assert torch.allclose(z.mean(dim=1), torch.zeros(2), atol=1e-5)
