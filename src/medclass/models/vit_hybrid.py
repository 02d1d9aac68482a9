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

import torch
from timm.layers import resample_abs_pos_embed, trunc_normal_
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.coatnet import AdaptiveDownConv
from medclass.models.layers import TransformerBlock, init_weights
from medclass.models.registry import register


class ConvStem(nn.Module):
    """``convs`` adaptive stride-2 3×3 conv-BN-ReLU (widths doubling up to ``dim``) + 1×1 proj."""

    def __init__(self, in_chans: int, dim: int, convs: int = 4, min_grid: int = 7) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_chans
        for i in range(convs):
            cout = max(4, dim // 2 ** (convs - 1 - i))
            layers.append(AdaptiveDownConv(cin, cout, 2 * min_grid, act=nn.ReLU))
            cin = cout
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(cin, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.convs(x))


class VitHybrid(ClassifierModel):
    """Conv stem → [class token; tokens] + position embedding → transformer → class-token head."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        width: int = 192,
        depth: int = 12,
        heads: int = 3,
        mlp_ratio: float = 4.0,
        stem_convs: int = 4,
        min_grid: int = 7,
        ref_grid: int = 14,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.ref_grid = ref_grid
        self.stem = ConvStem(in_chans, width, stem_convs, min_grid)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + ref_grid * ref_grid, width))
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.Sequential(
            *(TransformerBlock(width, heads, mlp_ratio, drop_path=dp) for dp in dpr)
        )
        self.norm = nn.LayerNorm(width)
        self._init_head(width, num_classes, drop_rate)
        self.apply(init_weights)
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)

    def no_weight_decay(self) -> set[str]:
        """timm's convention: tokens and position embeddings get no weight decay."""
        return {"cls_token", "pos_embed"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, 1 + h*w, width) after the final norm; index 0 is the class token."""
        x = self.stem(x)
        h, w = x.shape[-2:]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], 1)
        pos = resample_abs_pos_embed(self.pos_embed, [h, w], [self.ref_grid] * 2,
                                     num_prefix_tokens=1)
        return self.norm(self.blocks(x + pos))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Class token → dropout → classifier (``pre_logits`` stops before it)."""
        x = self.head_drop(x[:, 0])
        return x if pre_logits else self.fc(x)


@register("vit_hybrid", family="vit_hybrid", min_size=16, default_size=224, lr_mult=0.5,
          scheduler="cosine")
def vit_hybrid(num_classes: int, in_chans: int = 3, drop_rate: float = 0.0, **kw) -> VitHybrid:
    """ViT-Ti with a 4-conv stem: width 192, depth 12, 3 heads (~5.7 M params)."""
    return VitHybrid(num_classes, in_chans, drop_rate=drop_rate, **kw)
