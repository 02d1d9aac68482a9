"""Hybrid ViT: a convolutional stem makes the tokens, a plain transformer classifies them.

Stem after Xiao et al. 2021 ("Early convolutions help transformers see better"): stacked 3×3
conv-BN-ReLU, each halving the resolution, then a 1×1 projection to the embedding width. A class
token and learnable position embeddings (for a ``ref_grid``² token grid, bicubically resized to
the actual grid) are added before the pre-norm transformer blocks; the head reads the class token.

Any input side works (registered minimum 16 px): a stem conv strides only while the map side is
at least ``2 * min_grid``, so a 224 px image gives a 14×14 grid (stride 16), 64 px 8×8 and
28 px 7×7 (stride 4) instead of a 2×2 grid.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from medclass.models.layers import AdaptiveStrideConv
from medclass.models.registry import register_model
from medclass.models.tokens import TokenClassifier


class ConvStem(nn.Module):
    """``convs`` adaptive stride-2 3×3 conv-BN-ReLU (widths doubling up to ``dim``) + 1×1 proj."""

    def __init__(self, in_chans: int, dim: int, convs: int = 4, min_grid: int = 7) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_chans
        for i in range(convs):
            cout = max(4, dim // 2 ** (convs - 1 - i))
            layers.append(AdaptiveStrideConv(cin, cout, 2 * min_grid))
            cin = cout
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(cin, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.convs(x))


@register_model(
    "vit_hybrid",
    "ViT-Ti with a 4-conv stem: width 192, depth 12, 3 heads (~5.7 M params).",
    family="vit_hybrid", min_size=16, default_size=224, lr_mult=0.5, scheduler="cosine",
)
class VitHybrid(TokenClassifier):
    """Conv stem → [class token; tokens] + position embedding → transformer → class-token head.

    Options: ``stem_convs``, ``min_grid`` and ``TokenClassifier``'s (``width``, ``depth``,
    ``heads``, ``mlp_ratio``, ``ref_grid``, ``drop_rate``, ``drop_path_rate``).
    """

    def __init__(self, num_classes: int, in_chans: int = 3, stem_convs: int = 4,
                 min_grid: int = 7, **kw: Any) -> None:
        self.stem_convs, self.min_grid = stem_convs, min_grid
        super().__init__(num_classes, in_chans, **kw)

    def make_embed(self, in_chans: int, width: int) -> None:
        """The convolutional stem."""
        self.stem = ConvStem(in_chans, width, self.stem_convs, self.min_grid)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, 1 + h*w, width) after the final norm; index 0 is the class token."""
        x = self.stem(x)
        pos = resample_abs_pos_embed(self.pos_embed, list(x.shape[-2:]), [self.ref_grid] * 2,
                                     num_prefix_tokens=1)
        return self.encode(x, pos)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Class token → dropout → classifier (``pre_logits`` stops before it)."""
        x = self.head_drop(x[:, 0])
        return x if pre_logits else self.fc(x)
