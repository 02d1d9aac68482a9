"""GhostNetV2 (Tang et al., 2022): ghost modules with decoupled fully-connected (DFC) attention.

A ghost module makes half its channels with a 1×1 "primary" conv and the other half with a
cheap depthwise conv on those. The DFC branch (on a 2× average-pooled input) builds a
long-range gate from a 1×1 conv followed by horizontal 1×k and vertical k×1 depthwise convs,
upsampled and multiplied in. Odd sides are fine: pooling uses ``ceil_mode`` and the gate is
resized to the ghost output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct, SqueezeExcite, make_divisible
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import init_weights, make_drop_path
from medclass.models.registry import register_model
from medclass.models.stages import drop_path_rates

# GhostNet 1.0× stages; each block: (kernel, expanded channels, out channels, SE ratio, stride)
STAGES: tuple[tuple[tuple[int, int, int, float, int], ...], ...] = (
    ((3, 16, 16, 0, 1),),
    ((3, 48, 24, 0, 2),),
    ((3, 72, 24, 0, 1),),
    ((5, 72, 40, 0.25, 2),),
    ((5, 120, 40, 0.25, 1),),
    ((3, 240, 80, 0, 2),),
    ((3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1), (3, 480, 112, 0.25, 1),
     (3, 672, 112, 0.25, 1)),
    ((5, 672, 160, 0.25, 2),),
    ((5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1)),
)


class DFCAttention(nn.Module):
    """Decoupled fully-connected attention: pool 2× → 1×1 → dw 1×k → dw k×1 → sigmoid gate."""

    def __init__(self, cin: int, cout: int, kernel: int = 5) -> None:
        super().__init__()
        self.proj = ConvNormAct(cin, cout, 1, apply_act=False)
        self.horizontal = ConvNormAct(cout, cout, (1, kernel), groups=cout, apply_act=False)
        self.vertical = ConvNormAct(cout, cout, (kernel, 1), groups=cout, apply_act=False)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Gate in (0, 1) for a feature map of spatial ``size``."""
        y = F.avg_pool2d(x, 2, ceil_mode=True)
        y = torch.sigmoid(self.vertical(self.horizontal(self.proj(y))))
        return F.interpolate(y, size=size, mode="nearest")


class GhostModule(nn.Module):
    """Primary 1×1 conv + cheap depthwise 3×3 on its output, concatenated (ratio 2)."""

    def __init__(self, cin: int, cout: int, relu: bool = True, dfc: bool = False) -> None:
        super().__init__()
        self.cout = cout
        init = math.ceil(cout / 2)
        act = nn.ReLU if relu else None
        self.primary = ConvNormAct(cin, init, 1, act_layer=act)
        self.cheap = ConvNormAct(init, init, 3, groups=init, act_layer=act)
        self.attn = DFCAttention(cin, cout) if dfc else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        out = torch.cat([y, self.cheap(y)], dim=1)[:, : self.cout]
        if self.attn is not None:
            out = out * self.attn(x, out.shape[-2:])
        return out


class GhostBottleneck(nn.Module):
    """Ghost (expand, DFC) → [dw k×k stride 2] → [SE] → ghost (project), plus a shortcut."""

    def __init__(self, cin: int, mid: int, cout: int, kernel: int, stride: int, se_ratio: float,
                 dfc: bool = True, drop_path: float = 0.0) -> None:
        super().__init__()
        self.ghost1 = GhostModule(cin, mid, relu=True, dfc=dfc)
        self.dw = ConvNormAct(mid, mid, kernel, stride, groups=mid, apply_act=False) if stride > 1 \
            else nn.Identity()
        self.se = SqueezeExcite(mid, rd_channels=make_divisible(mid * se_ratio, 4),
                                act_layer=nn.SiLU) if se_ratio > 0 else nn.Identity()
        self.ghost2 = GhostModule(mid, cout, relu=False)
        self.drop_path = make_drop_path(drop_path)
        if stride == 1 and cin == cout:
            self.short: nn.Module = nn.Identity()
        else:
            self.short = nn.Sequential(
                ConvNormAct(cin, cin, kernel, stride, groups=cin, apply_act=False),
                ConvNormAct(cin, cout, 1, apply_act=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ghost2(self.se(self.dw(self.ghost1(x))))
        return self.short(x) + self.drop_path(y)


@register_model(
    "ghostnet",
    "GhostNetV2 1.0× (~6 M params); ``width`` scales channels, ``head_chs`` the conv head.",
    family="cnn", min_size=16, default_size=224, lr_mult=1.0, scheduler="onecycle",
)
class GhostNetV2(ClassifierModel):
    """Stem → ghost bottlenecks → 1×1 conv; pooled features go through a 1×1 "conv head"."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        width: float = 1.0,
        stem_stride: int = 2,
        head_chs: int = 1280,
        dfc: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if width <= 0 or head_chs < 1:
            raise TypeError("width and head_chs must be positive")
        if stem_stride not in (1, 2):
            raise TypeError(f"stem_stride must be 1 or 2, got {stem_stride}")

        def ch(c: float) -> int:
            return make_divisible(c * width, 4)

        blocks = [b for stage in STAGES for b in stage]
        dpr = drop_path_rates(len(blocks), drop_path_rate)
        cin = ch(16)
        layers: list[nn.Module] = [ConvNormAct(in_chans, cin, 3, stem_stride)]
        k = 0
        for stage in STAGES:
            mods: list[nn.Module] = []
            for kernel, mid, cout, se, stride in stage:
                # as in the paper, the very first bottleneck has no DFC attention
                mods.append(GhostBottleneck(cin, ch(mid), ch(cout), kernel, stride, se,
                                            dfc=dfc and k > 0, drop_path=dpr[k]))
                cin, k = ch(cout), k + 1
            layers.append(nn.Sequential(*mods))
        layers.append(ConvNormAct(cin, ch(960), 1))
        self.features = nn.Sequential(*layers)
        self.conv_head = nn.Sequential(nn.Linear(ch(960), head_chs), nn.ReLU(inplace=True))
        self._init_head(head_chs, num_classes, drop_rate)
        self.apply(init_weights)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool → 1×1 conv head (as Linear) + ReLU → dropout → classifier."""
        x = self.head_drop(self.conv_head(x.mean(dim=(2, 3))))
        return x if pre_logits else self.fc(x)
