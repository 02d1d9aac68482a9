"""ResNet with bottleneck blocks and Mish activations (ResNet-D tweaks: deep stem, avg-down).

Bottleneck: 1×1 reduce → 3×3 (carries the stride) → 1×1 expand (×4), Mish after each conv
and after the residual sum; the last BatchNorm of each block starts at zero so every block is
an identity at init. Downsampling shortcuts average-pool (``ceil_mode``) then 1×1-project, so
odd sides work: 28 px → 7 (stem, stride 4) → 4 → 2 → 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import ConvNormAct, DropPath, init_weights
from medclass.models.registry import register


class MishBottleneck(nn.Module):
    """1×1 → 3×3 (stride) → 1×1 (×``expansion``) with Mish; projection shortcut on change."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, drop_path: float = 0.0) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = ConvNormAct(cin, width, 1, act=nn.Mish)
        self.conv2 = ConvNormAct(width, width, 3, stride, act=nn.Mish)
        self.conv3 = ConvNormAct(width, cout, 1, act=None)
        nn.init.zeros_(self.conv3[1].weight)  # zero-init residual branch (identity at start)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if stride == 1 and cin == cout:
            self.short: nn.Module = nn.Identity()
        else:
            pool = (nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False) if stride > 1
                    else nn.Identity())
            self.short = nn.Sequential(pool, ConvNormAct(cin, cout, 1, act=None))
        self.act = nn.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.conv2(self.conv1(x)))
        return self.act(self.short(x) + self.drop_path(y))


class ResNetMish(ClassifierModel):
    """Deep 3×3 stem (+ max-pool) → four bottleneck stages (stride 2 between them)."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        width: int = 32,
        depths: Sequence[int] = (3, 4, 6, 3),
        stem_stride: int = 4,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if not depths or min(depths) < 1 or width < 1:
            raise TypeError("depths must be non-empty with every depth ≥ 1; width ≥ 1")
        if stem_stride not in (1, 2, 4):
            raise TypeError(f"stem_stride must be 1, 2 or 4, got {stem_stride}")
        stem_w = width * 2
        stem: list[nn.Module] = [
            ConvNormAct(in_chans, width, 3, 2 if stem_stride > 1 else 1, act=nn.Mish),
            ConvNormAct(width, width, 3, act=nn.Mish),
            ConvNormAct(width, stem_w, 3, act=nn.Mish),
        ]
        if stem_stride == 4:
            stem.append(nn.MaxPool2d(3, 2, 1))
        layers: list[nn.Module] = [nn.Sequential(*stem)]
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        cin, k = stem_w, 0
        for i, depth in enumerate(depths):
            stage: list[nn.Module] = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                stage.append(MishBottleneck(cin, width * 2**i, stride, dpr[k]))
                cin, k = width * 2**i * MishBottleneck.expansion, k + 1
            layers.append(nn.Sequential(*stage))
        self.features = nn.Sequential(*layers)
        self._init_head(cin, num_classes, drop_rate)
        self.apply(init_weights)  # convs/linears only: the zeroed BatchNorms stay zero


@register("resnet_mish", family="cnn", min_size=16, default_size=224, lr_mult=1.0,
          scheduler="onecycle")
def resnet_mish(num_classes: int, in_chans: int = 3, drop_rate: float = 0.0,
                **kw) -> ResNetMish:
    """ResNet-50 layout (3-4-6-3) at half width (``width=32``, ~6 M params)."""
    return ResNetMish(num_classes, in_chans, drop_rate=drop_rate, **kw)
