"""ResNet with bottleneck blocks and Mish activations (ResNet-D tweaks: deep stem, avg-down).

Bottleneck: 1×1 reduce → 3×3 (carries the stride) → 1×1 expand (×4), Mish after each conv
and after the residual sum; the last BatchNorm of each block starts at zero so every block is
an identity at init. Downsampling shortcuts average-pool (``ceil_mode``) then 1×1-project, so
odd sides work: 28 px → 7 (stem, stride 4) → 4 → 2 → 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import ConvNormAct
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import init_weights, make_drop_path
from medclass.models.registry import register_model
from medclass.models.stages import build_stages


class MishBottleneck(nn.Module):
    """1×1 → 3×3 (stride) → 1×1 (×``expansion``) with Mish; projection shortcut on change."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, drop_path: float = 0.0) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = ConvNormAct(cin, width, 1, act_layer=nn.Mish)
        self.conv2 = ConvNormAct(width, width, 3, stride, act_layer=nn.Mish)
        self.conv3 = ConvNormAct(width, cout, 1, apply_act=False)
        nn.init.zeros_(self.conv3.bn.weight)  # zero-init residual branch (identity at start)
        self.drop_path = make_drop_path(drop_path)
        if stride == 1 and cin == cout:
            self.short: nn.Module = nn.Identity()
        else:
            pool = (nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False) if stride > 1
                    else nn.Identity())
            self.short = nn.Sequential(pool, ConvNormAct(cin, cout, 1, apply_act=False))
        self.act = nn.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.conv2(self.conv1(x)))
        return self.act(self.short(x) + self.drop_path(y))


@register_model(
    "resnet_mish",
    "ResNet-50 layout (3-4-6-3) at half width (``width=32``, ~6 M params).",
    family="cnn", min_size=16, default_size=224, lr_mult=1.0, scheduler="onecycle",
)
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
            ConvNormAct(in_chans, width, 3, 2 if stem_stride > 1 else 1, act_layer=nn.Mish),
            ConvNormAct(width, width, 3, act_layer=nn.Mish),
            ConvNormAct(width, stem_w, 3, act_layer=nn.Mish),
        ]
        if stem_stride == 4:
            stem.append(nn.MaxPool2d(3, 2, 1))
        expansion = MishBottleneck.expansion
        stages, cout = build_stages(
            [width * 2**i * expansion for i in range(len(depths))], depths,
            lambda b: MishBottleneck(b.cin, b.cout // expansion, b.stride, b.drop_path),
            cin=stem_w, drop_path_rate=drop_path_rate, nested=True,
        )
        self.features = nn.Sequential(nn.Sequential(*stem), *stages)
        self._init_head(cout, num_classes, drop_rate)
        self.apply(init_weights)  # convs/linears only: the zeroed BatchNorms stay zero
