"""A compact residual CNN, trained from scratch; the fast default backbone."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import ConvNormAct
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.registry import register_model
from medclass.models.stages import build_stages


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (projection when shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, 3, stride)
        self.conv2 = ConvNormAct(cout, cout, 3, apply_act=False)
        self.short = (
            nn.Identity() if stride == 1 and cin == cout
            else ConvNormAct(cin, cout, 1, stride, apply_act=False)
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.short(x))


@register_model(
    "simple_cnn",
    "Default: widths 32-64-128, one block per stage (~0.5 M params).",
    family="cnn", min_size=8, default_size=32,
)
@register_model(
    "simple_cnn_tiny",
    "Tiny width for tests and smoke runs.",
    defaults={"widths": (8, 16), "depths": (1, 1)}, family="cnn", min_size=8, default_size=32,
)
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
        blocks, cout = build_stages(widths, depths, lambda b: BasicBlock(b.cin, b.cout, b.stride))
        self.features = nn.Sequential(ConvNormAct(in_chans, widths[0], 3), *blocks)
        self._init_head(cout, num_classes, drop_rate)
