"""A compact residual CNN, trained from scratch; the fast default backbone."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.registry import register


def conv_bn_act(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv, BatchNorm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (projection when shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_act(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.short(x))


class SimpleCNN(ClassifierModel):
    """Stem + residual stages (stride 2 between stages) + pooled linear head."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        widths: Sequence[int] = (32, 64, 128),
        depths: Sequence[int] = (1, 1, 1),
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(widths) != len(depths) or not widths:
            raise TypeError("widths and depths must be non-empty and of equal length")
        layers: list[nn.Module] = [conv_bn_act(in_chans, widths[0])]
        cin = widths[0]
        for i, (w, d) in enumerate(zip(widths, depths, strict=True)):
            for j in range(d):
                layers.append(BasicBlock(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w
        self.features = nn.Sequential(*layers)
        self._init_head(cin, num_classes, drop_rate)


@register("simple_cnn", family="cnn", min_size=8, default_size=32)
def simple_cnn(num_classes: int, in_chans: int = 3, drop_rate: float = 0.0, **kw) -> SimpleCNN:
    """Default: widths 32-64-128, one block per stage (~0.5 M params)."""
    return SimpleCNN(num_classes, in_chans, drop_rate=drop_rate, **kw)


@register("simple_cnn_tiny", family="cnn", min_size=8, default_size=32)
def simple_cnn_tiny(num_classes: int, in_chans: int = 3, drop_rate: float = 0.0, **kw) -> SimpleCNN:
    """Tiny width for tests and smoke runs."""
    kw.setdefault("widths", (8, 16))
    kw.setdefault("depths", (1, 1))
    return SimpleCNN(num_classes, in_chans, drop_rate=drop_rate, **kw)
