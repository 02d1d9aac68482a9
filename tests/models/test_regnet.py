"""RegNet: quantised width parameterisation, X/Y blocks, small inputs."""

import pytest
import torch
from timm.layers import SqueezeExcite

from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS
from medclass.models.regnet import RegNet, regnet_stages

NAME = "regnet"


def _tiny(in_chans: int = 3, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY_KWARGS[NAME], **kw})


def test_regnety_400mf_widths_match_the_paper():
    stages = regnet_stages(16, 48, 27.89, 2.09, 8)
    assert [w for w, _, _ in stages] == [48, 104, 208, 440]
    assert [d for _, d, _ in stages] == [1, 3, 6, 6]


def test_regnetx_400mf_widths_match_the_paper():
    stages = regnet_stages(22, 24, 24.48, 2.54, 16)
    assert [(w, d) for w, d, _ in stages] == [(32, 1), (64, 2), (160, 7), (384, 12)]


@pytest.mark.parametrize("b", [1.0, 0.25])
def test_widths_are_compatible_with_group_width(b):
    for w, _, g in regnet_stages(13, 24, 36.0, 2.5, 24, bottleneck_ratio=b):
        assert int(round(w * b)) % g == 0


def test_invalid_parameterisation_is_a_clear_error():
    with pytest.raises(ValueError, match="wm > 1"):
        regnet_stages(4, 8, 8.0, 1.0, 8)


def test_se_ratio_zero_gives_regnetx():
    assert not any(isinstance(m, SqueezeExcite) for m in _tiny(se_ratio=0.0).modules())
    assert any(isinstance(m, SqueezeExcite) for m in _tiny().modules())


def test_stages_follow_the_spec_and_downsample():
    model = RegNet(3, **TINY_KWARGS[NAME]).eval()
    assert [w for w, _, _ in model.stage_specs] == [8, 16, 32]
    with torch.no_grad():
        big = model.forward_features(torch.randn(1, 3, 64, 64))
        small = model.forward_features(torch.randn(1, 3, 28, 28))
    assert big.shape == (1, 32, 4, 4)  # stride 16: stem 2 × three stages
    assert small.shape == (1, 32, 4, 4)  # small input: stem stride skipped
