"""Dilated group-conv net: residual bottlenecks with dilated 7x7 group convs, no pooling.

Each stage is a stack of bottleneck blocks (1x1 reduce, 7x7 grouped conv with dilation
cycling 1-2-4, 1x1 expand, residual), so the receptive field grows quickly without losing
resolution; stages are joined by strided 3x3 convs rather than pooling (32 -> 16 -> 8 for a
32 px input). Padding equals the dilated kernel's half-span, so any input side works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import ConvNormAct, DropPath, init_weights
from medclass.models.registry import register


class DilatedGroupBlock(nn.Module):
    """1x1 reduce, dilated kxk group conv, 1x1 expand (BN), + identity under stochastic depth."""

    def __init__(
        self,
        dim: int,
        dilation: int,
        kernel: int = 7,
        bottleneck: float = 0.5,
        group_width: int = 8,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        mid = max(group_width, int(dim * bottleneck) // group_width * group_width)
        self.block = nn.Sequential(
            ConvNormAct(dim, mid, 1),
            ConvNormAct(mid, mid, kernel, groups=mid // group_width, dilation=dilation),
            ConvNormAct(mid, dim, 1, act=None),
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.drop_path(self.block(x)))


class DilatedGroupConvNet(ClassifierModel):
    """3x3 stem, stages of dilated group blocks joined by stride-2 3x3 convs, pooled head."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        dims: Sequence[int] | None = None,
        depths: Sequence[int] | None = None,
        width: int | None = None,
        dilations: Sequence[int] = (1, 2, 4),
        kernel_size: int = 7,
        bottleneck: float = 0.5,
        group_width: int = 8,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if dims is not None and width is not None:
            raise TypeError("give either width or dims, not both")
        if dims is None:
            w = 32 if width is None else width
            dims = (w, 2 * w, 4 * w)
        depths = (len(dilations),) * len(dims) if depths is None else depths
        if not dims or len(dims) != len(depths) or min(depths) < 1 or not dilations:
            raise ValueError(f"dims {dims}, depths {depths}, dilations {dilations} are invalid")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        layers: list[nn.Module] = [ConvNormAct(in_chans, dims[0], 3)]
        cin, idx = dims[0], 0
        for i, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
            if i > 0:
                layers.append(ConvNormAct(cin, dim, 3, stride=2))
            for j in range(depth):
                d = dilations[j % len(dilations)]
                layers.append(
                    DilatedGroupBlock(dim, d, kernel_size, bottleneck, group_width, rates[idx])
                )
                idx += 1
            cin = dim
        self.features = nn.Sequential(*layers)
        self._init_head(cin, num_classes, drop_rate)
        self.apply(init_weights)


@register("dilated_groupconv", family="dilated_cnn", min_size=16, default_size=32, lr_mult=1.0,
          scheduler="onecycle")
def dilated_groupconv(
    num_classes: int, in_chans: int = 3, drop_rate: float = 0.0, **kw: Any
) -> DilatedGroupConvNet:
    """Widths 32-64-128, three blocks per stage with dilations 1-2-4, 7x7 groups of 8."""
    return DilatedGroupConvNet(num_classes, in_chans, drop_rate=drop_rate, **kw)
