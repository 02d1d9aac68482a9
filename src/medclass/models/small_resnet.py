"""A small ResNet with 7x7 residual blocks, for small (28-64 px) images trained from scratch.

A 3x3 stride-1 stem keeps every input pixel, then one residual stage per width (32-64-128-256
by default); each stage after the first halves the resolution with a strided 7x7 conv, so a
32 px input ends on a 4x4 map. Any input side works (ceil-halving); large inputs are slow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import ConvNormAct, DropPath, init_weights
from medclass.models.registry import register


class ResBlock7(nn.Module):
    """Two kxk conv-BN layers (the first may stride) plus a shortcut, then ReLU.

    The shortcut is a 1x1 conv-BN (after a 2x2 average pool when striding) when the shape
    changes; the residual branch is dropped per sample by stochastic depth.
    """

    def __init__(
        self, cin: int, cout: int, stride: int = 1, kernel: int = 7, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            ConvNormAct(cin, cout, kernel, stride),
            ConvNormAct(cout, cout, kernel, act=None),
        )
        if stride == 1 and cin == cout:
            self.short: nn.Module = nn.Identity()
        else:
            pool = nn.AvgPool2d(stride, ceil_mode=True) if stride > 1 else nn.Identity()
            self.short = nn.Sequential(pool, ConvNormAct(cin, cout, 1, act=None))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.short(x) + self.drop_path(self.branch(x)))


class SmallResNet(ClassifierModel):
    """3x3 stem, then ``len(dims)`` stages of 7x7 residual blocks (stride 2 after the first)."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        dims: Sequence[int] | None = None,
        depths: Sequence[int] | None = None,
        width: int | None = None,
        kernel_size: int = 7,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if dims is not None and width is not None:
            raise TypeError("give either width or dims, not both")
        if dims is None:
            w = 16 if width is None else width
            dims = (w, 2 * w, 4 * w, 8 * w)
        depths = (1,) * len(dims) if depths is None else depths
        if not dims or len(dims) != len(depths) or min(depths) < 1:
            raise ValueError(f"dims {dims} and depths {depths} must be non-empty, equal length")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        layers: list[nn.Module] = [ConvNormAct(in_chans, dims[0], 3)]
        cin, idx = dims[0], 0
        for i, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(ResBlock7(cin, dim, stride, kernel_size, rates[idx]))
                cin, idx = dim, idx + 1
        self.features = nn.Sequential(*layers)
        self._init_head(cin, num_classes, drop_rate)
        self.apply(init_weights)


@register("small_resnet", family="resnet", min_size=16, default_size=32, lr_mult=1.0,
          scheduler="onecycle")
def small_resnet(
    num_classes: int, in_chans: int = 3, drop_rate: float = 0.0, **kw: Any
) -> SmallResNet:
    """Widths 16-32-64-128, one 7x7 residual block per stage."""
    return SmallResNet(num_classes, in_chans, drop_rate=drop_rate, **kw)
