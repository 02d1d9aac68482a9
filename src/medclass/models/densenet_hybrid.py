"""DenseNet-BC dense blocks and transitions with a light transformer tail over the final map.

Dense part: stem (3×3 stride-2 conv, 3×3 max-pool), dense blocks of pre-activation bottleneck
layers (BN-ReLU-1×1 → BN-ReLU-3×3, each adding ``growth_rate`` channels by concatenation) and
transitions (BN-ReLU-1×1 compression, 2×2 average pool). Tail: 1×1 projection to ``embed_dim``,
a depthwise-conv positional encoding (size-agnostic), ``tail_depth`` pre-norm TransformerBlocks
over the H·W tokens, LayerNorm. ``forward_features`` returns the tokens reshaped back to NCHW.
Stochastic depth drops a dense layer's new channels or a transformer block's residual branch.

Size rule: any side ≥ 16 px. Inputs whose shorter side is < 64 px skip the stem conv's stride
(total stride 16 instead of 32), so 28-px images give 2×2 = 4 tokens; 224 px gives 7×7 = 49.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import ConvNormAct
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import (
    AdaptiveStrideConv,
    TransformerBlock,
    init_weights,
    make_drop_path,
)
from medclass.models.registry import register_model


def bn_relu_conv(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    """Pre-activation conv: BatchNorm → ReLU → conv (no bias)."""
    return [nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)]


class DenseLayer(nn.Module):
    """Bottleneck dense layer: ``cat(x, DropPath(3×3(1×1(x))))`` — adds ``growth`` channels."""

    def __init__(self, cin: int, growth: int, bn_size: int, drop_path: float) -> None:
        super().__init__()
        self.net = nn.Sequential(*bn_relu_conv(cin, bn_size * growth, 1),
                                 *bn_relu_conv(bn_size * growth, growth, 3))
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.drop_path(self.net(x))], dim=1)


class Transition(nn.Sequential):
    """BN-ReLU-1×1 conv (channel compression) then 2×2 average pool (ceil mode: odd sides ok)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(*bn_relu_conv(cin, cout, 1), nn.AvgPool2d(2, ceil_mode=True))


class Stem(nn.Module):
    """3×3 stride-2 conv-BN-ReLU (stride 1 below 64 px), then a 3×3 stride-2 max-pool."""

    def __init__(self, in_chans: int, cout: int) -> None:
        super().__init__()
        self.conv = AdaptiveStrideConv(in_chans, cout)
        self.pool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


@register_model(
    "densenet_hybrid",
    """Default: growth 24, depths (4, 8, 16, 12), tail 2 × TransformerBlock(256, 8 heads).

    Options: ``growth_rate``, ``depths``, ``bn_size``, ``compression``, ``embed_dim``,
    ``num_heads``, ``tail_depth``, ``mlp_ratio``, ``drop_path_rate``.
    """,
    family="densenet_hybrid", min_size=16, default_size=224, lr_mult=1.0, scheduler="cosine",
)
class DenseNetHybrid(ClassifierModel):
    """Dense blocks + transitions (total stride 32) → transformer tail → pooled linear head."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        growth_rate: int = 24,
        depths: Sequence[int] = (4, 8, 16, 12),
        bn_size: int = 4,
        compression: float = 0.5,
        embed_dim: int = 256,
        num_heads: int = 8,
        tail_depth: int = 2,
        mlp_ratio: float = 3.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if not depths or min(depths) < 1 or growth_rate < 1:
            raise ValueError("densenet_hybrid: depths must be positive ints, growth_rate ≥ 1")
        if embed_dim % num_heads:
            raise ValueError(f"densenet_hybrid: embed_dim {embed_dim} not divisible by "
                             f"num_heads {num_heads}")
        dpr = torch.linspace(0, drop_path_rate, sum(depths) + tail_depth).tolist()
        c = 2 * growth_rate
        layers: list[nn.Module] = [Stem(in_chans, c)]
        k = 0
        for i, d in enumerate(depths):
            for _ in range(d):
                layers.append(DenseLayer(c, growth_rate, bn_size, dpr[k]))
                c, k = c + growth_rate, k + 1
            if i < len(depths) - 1:
                layers.append(Transition(c, int(c * compression)))
                c = int(c * compression)
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.proj = ConvNormAct(c, embed_dim, 1, apply_act=False)
        self.pos = nn.Conv2d(embed_dim, embed_dim, 3, padding=1, groups=embed_dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(embed_dim, num_heads, mlp_ratio, drop_path=dpr[k + i])
            for i in range(tail_depth)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self._init_head(embed_dim, num_classes, drop_rate)
        self.apply(init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim, H/32, W/32) map of transformer-refined tokens."""
        x = self.proj(self.features(x))
        x = x + self.pos(x)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t).transpose(1, 2).reshape(b, c, h, w)
