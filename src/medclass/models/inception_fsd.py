"""Inception-FSD: Inception modules with multi-scale feature-pyramid fusion, for small images.

A 3x3 stem runs at full resolution, then three stages of residual Inception modules, each
after a 3x3 stride-2 max pool: "local" (side/2), "mid" (side/4) and "global" (side/8). Like
an SSD-style pyramid, each scale is pooled to its own grid (local ``grid`` x ``grid``, mid
half of it, global 1x1), the coarse ones are broadcast back to the local grid, and a 1x1
conv fuses the three (``forward_features`` returns this (B, fuse_dim, grid, grid) map).
The head flattens it (keeping where on the grid a feature fired), applies a
Dropout-Linear-ReLU fusion layer (``pre_logits``) and the linear classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import init_weights, make_drop_path
from medclass.models.registry import register_model
from medclass.models.stages import build_stages, widths


class InceptionModule(nn.Module):
    """Parallel 1x1 / 1x1-3x3 / 1x1-3x3-3x3 (a factorised 5x5) / maxpool-1x1 branches.

    The concatenated branches (BN, no activation) are added to a shortcut (1x1 conv-BN when the
    width changes) under stochastic depth, then ReLU.
    """

    def __init__(self, cin: int, cout: int, drop_path: float = 0.0) -> None:
        super().__init__()
        c1, c3, c5 = cout // 4, cout // 2, cout // 8
        cp = cout - c1 - c3 - c5
        r3, r5 = max(8, cout * 3 // 8), max(8, cout // 16)
        self.b1 = ConvNormAct(cin, c1, 1, apply_act=False)
        self.b3 = nn.Sequential(ConvNormAct(cin, r3, 1), ConvNormAct(r3, c3, 3, apply_act=False))
        self.b5 = nn.Sequential(
            ConvNormAct(cin, r5, 1), ConvNormAct(r5, c5, 3), ConvNormAct(c5, c5, 3, apply_act=False)
        )
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), ConvNormAct(cin, cp, 1, apply_act=False))
        self.short = nn.Identity() if cin == cout else ConvNormAct(cin, cout, 1, apply_act=False)
        self.drop_path = make_drop_path(drop_path)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)
        return self.act(self.short(x) + self.drop_path(y))


@register_model(
    "inception_fsd",
    "Stem 32, Inception stages 64-128-256 (1-2-1 modules), 4x4 pyramid, 512-d fusion.",
    family="inception_fsd", min_size=16, default_size=32, lr_mult=1.0, scheduler="onecycle",
)
class InceptionFSD(ClassifierModel):
    """Stem + three pooled Inception stages whose outputs form a fused 3-level pyramid."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        dims: Sequence[int] | None = None,
        depths: Sequence[int] = (1, 2, 1),
        width: int | None = None,
        grid: int = 4,
        fuse_dim: int | None = None,
        hidden_dim: int | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        dims = widths(dims, width, 32, (2, 4, 8))
        stem_ch = width if width is not None else max(8, dims[0] // 2)
        if len(dims) != 3 or len(depths) != 3 or min(depths) < 1:
            raise ValueError(f"dims {dims} and depths {depths} need 3 entries (local/mid/global)")
        if grid < 2 or grid % 2:
            raise ValueError(f"grid must be an even int >= 2, got {grid}")
        self.grid = grid
        self.stem = nn.Sequential(
            ConvNormAct(in_chans, stem_ch, 3), ConvNormAct(stem_ch, stem_ch, 3)
        )
        stages, _ = build_stages(
            dims, depths, lambda b: InceptionModule(b.cin, b.cout, b.drop_path),
            strides=(1, 1, 1), transition=lambda i, cin, cout: (nn.MaxPool2d(3, 2, 1), cin),
            cin=stem_ch, drop_path_rate=drop_path_rate, nested=True,
        )
        self.stages = nn.ModuleList(stages)
        fd = fuse_dim or dims[-1] // 2
        self.fuse = ConvNormAct(sum(dims), fd, 1)
        hidden = hidden_dim or 2 * dims[-1]
        self.fusion_mlp = nn.Sequential(
            nn.Flatten(1), nn.Dropout(drop_rate), nn.Linear(fd * grid * grid, hidden), nn.ReLU()
        )
        self._init_head(hidden, num_classes, drop_rate)
        self.apply(init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Fused pyramid map (B, fuse_dim, grid, grid): local, mid and global features."""
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        g = self.grid
        local = F.adaptive_avg_pool2d(feats[0], g)
        mid = F.interpolate(F.adaptive_avg_pool2d(feats[1], g // 2), size=(g, g), mode="nearest")
        glob = feats[2].mean(dim=(2, 3), keepdim=True).expand(-1, -1, g, g)
        return self.fuse(torch.cat([local, mid, glob], dim=1))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Flatten the pyramid grid, fusion Dropout-Linear-ReLU, dropout, then the classifier."""
        x = self.head_drop(self.fusion_mlp(x))
        return x if pre_logits else self.fc(x)
