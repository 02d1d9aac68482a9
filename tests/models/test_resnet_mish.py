"""ResNet-Mish family: Mish bottlenecks, zero-init residuals, stems."""

import pytest
import torch
from torch import nn

from medclass.errors import MedclassError
from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS
from medclass.models.resnet_mish import MishBottleneck

NAME = "resnet_mish"


def _tiny(in_chans: int = 3, **kw) -> nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY_KWARGS[NAME], **kw})


def test_bottleneck_shapes_and_mish_only():
    block = MishBottleneck(16, 8, stride=2).eval()
    assert block(torch.randn(2, 16, 7, 7)).shape == (2, 32, 4, 4)
    kinds = {type(m).__name__ for m in _tiny().modules()}
    assert "Mish" in kinds and "ReLU" not in kinds


def test_zero_init_residual_makes_blocks_start_as_shortcut():
    block = MishBottleneck(32, 8).eval()
    x = torch.randn(2, 32, 5, 5)
    assert torch.allclose(block(x), nn.functional.mish(x))
    model = _tiny().eval()
    with torch.no_grad():
        a, b = model(torch.randn(2, 3, 32, 32))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize(("stem_stride", "side"), [(4, 1), (2, 2), (1, 4)])
def test_stem_stride_sets_final_resolution(stem_stride, side):
    model = _tiny(stem_stride=stem_stride).eval()
    assert model.forward_features(torch.randn(1, 3, 28, 28)).shape[-2:] == (side, side)


def test_default_layout_is_resnet50_half_width():
    model = create_model("resnet_mish", num_classes=2)
    assert [len(s) for s in model.features[1:]] == [3, 4, 6, 3]
    assert model.num_features == 1024
    with pytest.raises(MedclassError, match="stem_stride"):
        _tiny(stem_stride=3)
