"""MaxViT: block (local) vs grid (dilated) attention, padded maps, odd strided maps."""

import pytest
import torch

from medclass.models.checks import TINY_KWARGS
from medclass.models.maxvit import MaxViT, MaxViTBlock, PartitionBlock
from medclass.models.swin import grid_partition, grid_reverse, window_partition, window_reverse

NAME = "maxvit"
TINY = {**TINY_KWARGS[NAME], "drop_path_rate": 0.1}


def _influence(block: PartitionBlock, src: tuple[int, int], side: int = 4) -> set:
    """Positions whose output changes when the input token at ``src`` changes."""
    torch.manual_seed(0)
    for p in block.parameters():  # O(1) weights so that attention mixing is clearly visible
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(1, side, side, 8)
    x2 = x.clone()
    x2[0, src[0], src[1]] += torch.randn(8)
    with torch.no_grad():
        diff = (block(x) - block(x2)).abs().sum(-1)[0]
    return {(int(i), int(j)) for i, j in (diff > 0).nonzero()}


def test_partitions_round_trip_and_grid_is_dilated():
    x = torch.arange(16.0).view(1, 4, 4, 1)
    assert torch.equal(window_reverse(window_partition(x, 2, 2), 2, 2, 4, 4), x)
    assert torch.equal(grid_reverse(grid_partition(x, 2, 2), 2, 2, 4, 4), x)
    assert window_partition(x, 2, 2)[0, 0, :, 0].tolist() == [0, 1, 4, 5]
    assert grid_partition(x, 2, 2)[0, 0, :, 0].tolist() == [0, 2, 8, 10]


def test_block_attention_is_local_grid_attention_is_global():
    block = PartitionBlock(8, 2, size=2, grid=False).eval()
    grid = PartitionBlock(8, 2, size=2, grid=True).eval()
    assert _influence(block, (0, 0)) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert _influence(grid, (0, 0)) == {(0, 0), (0, 2), (2, 0), (2, 2)}


@pytest.mark.parametrize("grid", [False, True])
def test_padded_map_ignores_padding(grid):
    # 5 tokens a side with size 3 → two parts of 3 → padded to 6; padded keys are masked, so a
    # valid token only ever mixes with valid tokens of its own window/grid
    block = PartitionBlock(8, 2, size=3, grid=grid).eval()
    hit = _influence(block, (0, 0), side=5)
    assert hit == ({(i, j) for i in range(3) for j in range(3)} if not grid
                   else {(i, j) for i in (0, 2, 4) for j in (0, 2, 4)})


def test_strided_block_pads_odd_maps():
    block = MaxViTBlock(8, 16, stride=2, heads=2, size=7).eval()
    assert block(torch.randn(2, 8, 7, 7)).shape == (2, 16, 4, 4)


@pytest.mark.parametrize(("size", "side"), [(16, 4), (20, 5), (28, 7), (64, 8)])
def test_stem_keeps_small_inputs(size, side):
    model = MaxViT(2, **TINY).eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(2, 3, size, size)).shape[-1] == side


# --- head group, option validation and stochastic depth ---
