"""RegNet: quantised width parameterisation, X/Y blocks, small inputs."""

import pytest
import torch
import torch.nn.functional as F

from medclass.errors import MedclassError
from medclass.models import create_model
from medclass.models.layers import SqueezeExcite
from medclass.models.regnet import RegNet, regnet_stages

NAME = "regnet"
TINY = {"depth": 4, "w0": 8, "wa": 8.0, "wm": 2.0, "group_width": 8, "stem_width": 8}


# ---- generic checks for every registered name at a tiny width ----------------------------


def _tiny(in_chans: int = 3, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY, **kw})


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_forward_shapes_and_input_dependence(size, in_chans):
    model = _tiny(in_chans).eval()
    x1, x2 = torch.randn(2, 2, in_chans, size, size)
    with torch.no_grad():
        out1, out2 = model(x1), model(x2)
        pooled = model.forward_head(model.forward_features(x1), pre_logits=True)
        via_head = model.forward_head(model.forward_features(x1))
    assert out1.shape == (2, 3)
    assert torch.isfinite(out1).all() and torch.isfinite(out2).all()
    assert not torch.allclose(out1, out2)
    assert pooled.shape == (2, model.num_features)
    assert torch.allclose(via_head, out1, atol=1e-5)


def test_backward_reaches_every_parameter():
    model = _tiny(3, drop_path_rate=0.1).train()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def test_reset_classifier():
    model = _tiny(1).eval()
    model.reset_classifier(5)
    assert model.get_classifier().out_features == 5
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 5)


def test_unknown_kwarg_is_rejected():
    with pytest.raises(MedclassError, match="model_kwargs"):
        create_model(NAME, num_classes=2, bogus=1)


def test_default_width_runs_at_64px():
    torch.manual_seed(0)
    model = create_model(NAME, num_classes=4, in_chans=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 4) and torch.isfinite(out).all()


# ---- family-specific checks ---------------------------------------------------------


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
    model = RegNet(3, **TINY).eval()
    assert [w for w, _, _ in model.stage_specs] == [8, 16, 32]
    with torch.no_grad():
        big = model.forward_features(torch.randn(1, 3, 64, 64))
        small = model.forward_features(torch.randn(1, 3, 28, 28))
    assert big.shape == (1, 32, 4, 4)  # stride 16: stem 2 × three stages
    assert small.shape == (1, 32, 4, 4)  # small input: stem stride skipped
