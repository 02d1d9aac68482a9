"""Swin: fitted windows, shifted-window masking, patch merging, relative position bias."""

import torch

from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS
from medclass.models.swin import (
    PatchMerging,
    RelPosBias,
    SwinBlock,
    fit_window,
    label_mask,
)

NAME = "swin"
TINY = {**TINY_KWARGS[NAME], "drop_path_rate": 0.1}


def _influence(block: SwinBlock, src: tuple[int, int], side: int = 8) -> set[tuple[int, int]]:
    """Positions whose output changes when the input token at ``src`` changes."""
    torch.manual_seed(0)
    for p in block.parameters():  # O(1) weights so that attention mixing is clearly visible
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(1, side, side, 8)
    x2 = x.clone()
    x2[0, src[0], src[1]] += torch.randn(8)  # not a constant: LayerNorm would drop it
    with torch.no_grad():
        diff = (block(x) - block(x2)).abs().sum(-1)[0]
    return {(int(i), int(j)) for i, j in (diff > 0).nonzero()}


def _square(lo: int, hi: int) -> set[tuple[int, int]]:
    return {(i, j) for i in range(lo, hi) for j in range(lo, hi)}


def test_fit_window_rule():
    assert [fit_window(s, 7) for s in (1, 4, 7, 8, 14, 16, 56, 64)] == [1, 4, 7, 4, 7, 6, 7, 7]


def test_plain_windows_stay_local():
    block = SwinBlock(8, 2, window=4, shift=False).eval()
    assert _influence(block, (3, 3)) == _square(0, 4)


def test_shifted_windows_shift():
    block = SwinBlock(8, 2, window=4, shift=True).eval()
    assert block.geometry(8, 8) == ((4, 4), (2, 2))
    assert _influence(block, (3, 3)) == _square(2, 6)


def test_shift_mask_blocks_wraparound():
    # after the cyclic roll, (0, 0) shares a window with the far corner; the mask keeps them apart
    block = SwinBlock(8, 2, window=4, shift=True).eval()
    assert _influence(block, (0, 0)) == _square(0, 2)


def test_single_window_map_is_not_shifted():
    assert SwinBlock(8, 2, window=7, shift=True).geometry(7, 7) == ((7, 7), (0, 0))


def test_padded_map_keeps_shape():
    block = SwinBlock(8, 2, window=4, shift=True).eval()
    x = torch.randn(2, 5, 5, 8)
    with torch.no_grad():
        y = block(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_label_mask_blocks_padding_and_other_regions():
    mask = label_mask(torch.tensor([[0, 0, 1, -1]]))
    assert mask.shape == (1, 1, 4, 4)
    assert mask[0, 0, 0].tolist() == [0.0, 0.0, -100.0, -100.0]
    assert mask[0, 0, 2].tolist() == [-100.0, -100.0, 0.0, -100.0]


def test_patch_merging_pads_odd_maps():
    assert PatchMerging(8, 16)(torch.randn(2, 7, 7, 8)).shape == (2, 4, 4, 16)


def test_rel_pos_bias_is_translation_invariant_and_resizes():
    rel = RelPosBias(heads=2, size=4)
    bias = rel(3, 3)
    assert bias.shape == (2, 9, 9)
    assert torch.equal(bias[:, 0, 4], bias[:, 4, 8])  # offset (+1, +1) from two places
    assert torch.equal(rel(4, 4)[:, 0, 0], rel.table[:, 3, 3])
    assert rel(5, 5).shape == (2, 25, 25)


def test_tiny_input_16px():
    model = create_model(NAME, num_classes=2, **TINY).eval()
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 2)


# --- head group, option validation and stochastic depth ---
