"""MobileOne: over-parameterised branches and exact re-parameterisation."""

import pytest
import torch

from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS
from medclass.models.mobileone import MobileOne, MobileOneBlock, reparameterize_model

NAME = "mobileone"


def _tiny(in_chans: int = 3, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY_KWARGS[NAME], **kw})


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
