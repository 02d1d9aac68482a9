"""MobileOne: over-parameterised branches and exact re-parameterisation."""

import pytest
import torch
import torch.nn.functional as F

from medclass.errors import MedclassError
from medclass.models import create_model
from medclass.models.mobileone import MobileOne, MobileOneBlock, reparameterize_model

NAME = "mobileone"
TINY = {"widths": (8, 8, 16, 16, 32), "depths": (1, 1, 1, 1), "num_branches": 2}


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


def _with_bn_stats(model: torch.nn.Module, in_chans: int, size: int) -> torch.nn.Module:
    """Random BN affine params plus a few train-mode forwards: non-trivial running stats."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.5, 0.5)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, in_chans, size, size) * 2 + 0.5)
    return model.eval()


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_reparameterize_in_place_matches(size, in_chans):
    model = _with_bn_stats(_tiny(in_chans, drop_path_rate=0.1), in_chans, size)
    x = torch.randn(2, in_chans, size, size)
    n_before = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        before = model(x)
        assert model.reparameterize() is model
        after = model(x)
    assert model.is_reparameterized
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert sum(p.numel() for p in model.parameters()) < n_before
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_reparameterize_model_returns_fused_copy():
    model = _with_bn_stats(_tiny(3), 3, 32)
    x = torch.randn(2, 3, 32, 32)
    fused = reparameterize_model(model)
    assert fused is not model and not model.is_reparameterized and fused.is_reparameterized
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cin, cout, kernel, stride, groups", [
    (8, 8, 3, 1, 8), (8, 8, 3, 2, 8), (8, 16, 1, 1, 1), (8, 8, 1, 1, 1), (4, 8, 3, 1, 2)])
def test_block_fusion_is_exact(cin, cout, kernel, stride, groups):
    block = MobileOneBlock(cin, cout, kernel, stride, groups, num_branches=3)
    assert (block.identity is not None) == (stride == 1 and cin == cout)
    assert (block.scale is not None) == (kernel > 1)
    block = _with_bn_stats(block, cin, 7)
    x = torch.randn(2, cin, 7, 7)
    with torch.no_grad():
        before = block(x)
        block.reparameterize()
        after = block(x)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_branch_count_and_invalid_config():
    block = MobileOneBlock(8, 8, 3, num_branches=4)
    assert len(block.branches) == 4
    with pytest.raises(ValueError, match="widths"):
        MobileOne(3, widths=(8, 8), depths=(1, 1))
