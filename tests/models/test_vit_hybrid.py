"""Hybrid ViT: adaptive conv stem, class token, resized position embeddings."""

import pytest
import torch

from medclass.models.checks import TINY_KWARGS
from medclass.models.vit_hybrid import ConvStem, VitHybrid

NAME = "vit_hybrid"
TINY = {**TINY_KWARGS[NAME], "drop_path_rate": 0.1}


@pytest.mark.parametrize(("size", "grid"), [(16, 8), (28, 7), (32, 8), (64, 8), (224, 14)])
def test_stem_token_grid(size, grid):
    stem = ConvStem(1, 8).eval()
    with torch.no_grad():
        assert stem(torch.randn(1, 1, size, size)).shape == (1, 8, grid, grid)


def test_tokens_carry_class_token_and_resized_positions():
    model = VitHybrid(2, **TINY).eval()
    assert model.pos_embed.shape == (1, 1 + 14 * 14, 16)
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, 28, 28))
    assert feats.shape == (2, 1 + 7 * 7, 16)


def test_head_reads_only_the_class_token():
    model = VitHybrid(2, **TINY).eval()
    feats = torch.randn(2, 50, 16)
    other = feats.clone()
    other[:, 1:] = torch.randn(2, 49, 16)
    assert torch.equal(model.forward_head(feats), model.forward_head(other))


# --- head group, option validation and stochastic depth ---
