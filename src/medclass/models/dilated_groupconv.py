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
from timm.layers import ConvNormAct
from torch import nn

from medclass.models.layers import make_drop_path
from medclass.models.registry import register_model
from medclass.models.stages import SmallImageNet, build_stages


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
            ConvNormAct(mid, dim, 1, apply_act=False),
        )
        self.drop_path = make_drop_path(drop_path)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.drop_path(self.block(x)))


@register_model(
    "dilated_groupconv",
    "Widths 32-64-128, three blocks per stage with dilations 1-2-4, 7x7 groups of 8.",
    family="dilated_cnn", min_size=16, default_size=32, lr_mult=1.0, scheduler="onecycle",
)
class DilatedGroupConvNet(SmallImageNet):
    """3x3 stem, stages of dilated group blocks joined by stride-2 3x3 convs, pooled head.

    Options: ``dilations`` (cycled within a stage), ``bottleneck``, ``group_width`` and those of
    ``SmallImageNet`` (``dims``/``width``, ``depths``: ``len(dilations)`` blocks per stage by
    default, ``kernel_size``, ``drop_rate``, ``drop_path_rate``).
    """

    base_width = 32
    width_mults = (1, 2, 4)

    def __init__(self, num_classes: int, in_chans: int = 3, *,
                 dilations: Sequence[int] = (1, 2, 4), bottleneck: float = 0.5,
                 group_width: int = 8, **kw: Any) -> None:
        if not dilations:
            raise ValueError(f"dilations {dilations} are invalid: need at least one")
        self.dilations, self.bottleneck = tuple(dilations), bottleneck
        self.group_width = group_width
        super().__init__(num_classes, in_chans, **kw)

    def build(self, in_chans: int, dims: tuple[int, ...], depths: Sequence[int] | None,
              kernel_size: int, drop_path_rate: float) -> int:
        dil = self.dilations
        blocks, cout = build_stages(
            dims, (len(dil),) * len(dims) if depths is None else depths,
            lambda b: DilatedGroupBlock(b.cout, dil[b.index % len(dil)], kernel_size,
                                        self.bottleneck, self.group_width, b.drop_path),
            strides=(1,) * len(dims), drop_path_rate=drop_path_rate,
            transition=lambda i, cin, cout: (ConvNormAct(cin, cout, 3, 2), cout) if i else None,
        )
        self.features = nn.Sequential(ConvNormAct(in_chans, dims[0], 3), *blocks)
        return cout
