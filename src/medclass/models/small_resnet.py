"""A small ResNet with 7x7 residual blocks, for small (28-64 px) images trained from scratch.

A 3x3 stride-1 stem keeps every input pixel, then one residual stage per width (32-64-128-256
by default); each stage after the first halves the resolution with a strided 7x7 conv, so a
32 px input ends on a 4x4 map. Any input side works (ceil-halving); large inputs are slow.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import ConvNormAct
from torch import nn

from medclass.models.layers import make_drop_path
from medclass.models.registry import register_model
from medclass.models.stages import SmallImageNet, build_stages


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
            ConvNormAct(cout, cout, kernel, apply_act=False),
        )
        if stride == 1 and cin == cout:
            self.short: nn.Module = nn.Identity()
        else:
            pool = nn.AvgPool2d(stride, ceil_mode=True) if stride > 1 else nn.Identity()
            self.short = nn.Sequential(pool, ConvNormAct(cin, cout, 1, apply_act=False))
        self.drop_path = make_drop_path(drop_path)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.short(x) + self.drop_path(self.branch(x)))


def res7_layers(in_chans: int, dims: Sequence[int], depths: Sequence[int] | None,
                kernel_size: int, drop_path_rate: float) -> tuple[list[nn.Module], int]:
    """3x3 conv-BN-ReLU stem + stages of ``ResBlock7`` (one per stage unless ``depths``)."""
    blocks, cout = build_stages(
        dims, (1,) * len(dims) if depths is None else depths,
        lambda b: ResBlock7(b.cin, b.cout, b.stride, kernel_size, b.drop_path),
        drop_path_rate=drop_path_rate,
    )
    return [ConvNormAct(in_chans, dims[0], 3), *blocks], cout


@register_model(
    "small_resnet",
    "Widths 16-32-64-128, one 7x7 residual block per stage.",
    family="resnet", min_size=16, default_size=32, lr_mult=1.0, scheduler="onecycle",
)
class SmallResNet(SmallImageNet):
    """3x3 stem, then ``len(dims)`` stages of 7x7 residual blocks (stride 2 after the first).

    Options: those of ``SmallImageNet`` (``dims``/``width``, ``depths``: one block per stage by
    default, ``kernel_size``, ``drop_rate``, ``drop_path_rate``).
    """

    def build(self, in_chans: int, dims: tuple[int, ...], depths: Sequence[int] | None,
              kernel_size: int, drop_path_rate: float) -> int:
        layers, cout = res7_layers(in_chans, dims, depths, kernel_size, drop_path_rate)
        self.features = nn.Sequential(*layers)
        return cout
