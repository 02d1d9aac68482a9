"""RegNet (Radosavovic et al., 2020): stage widths from a quantised linear parameterisation.

Block widths follow ``u_j = w0 + wa·j`` (j < depth); each is snapped to ``w0·wm^round(log_wm(u_j /
w0))`` and to a multiple of 8, equal consecutive widths form a stage (stride 2 at its start).
Blocks are X blocks (1×1 → grouped 3×3 with fixed group width → 1×1, bottleneck ratio ``b``,
residual); ``se_ratio > 0`` adds squeeze-excitation (RegNetY), ``se_ratio=0`` gives RegNetX.

Size rule: any side ≥ 16 px. Inputs whose shorter side is < 64 px skip the stem's stride (total
stride 16 instead of 32, ``layers.AdaptiveStrideConv``), so 28-px images end in a 2×2 map.
"""

from __future__ import annotations

import math

import torch
from timm.layers import ConvNormAct, SqueezeExcite
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import AdaptiveStrideConv, init_weights, make_drop_path
from medclass.models.registry import register_model
from medclass.models.stages import build_stages


def regnet_stages(
    depth: int, w0: int, wa: float, wm: float, group_width: int,
    bottleneck_ratio: float = 1.0, quant: int = 8,
) -> list[tuple[int, int, int]]:
    """``[(width, depth, group_width), ...]`` per stage from the linear parameterisation."""
    if depth < 1 or w0 < 1 or wa <= 0 or wm <= 1 or w0 % quant:
        raise ValueError(
            f"regnet: need depth ≥ 1, wa > 0, wm > 1 and w0 a multiple of {quant} "
            f"(got depth={depth}, w0={w0}, wa={wa}, wm={wm})"
        )
    widths = []
    for j in range(depth):
        step = round(math.log((w0 + wa * j) / w0) / math.log(wm))
        widths.append(int(round(w0 * wm**step / quant) * quant))
    stages: list[list[int]] = []
    for w in widths:
        if stages and stages[-1][0] == w:
            stages[-1][1] += 1
        else:
            stages.append([w, 1])
    out = []
    for w, d in stages:  # make the bottleneck width a multiple of the (clipped) group width
        wb = int(round(w * bottleneck_ratio))
        g = min(group_width, wb)
        wb = max(g, int(round(wb / g) * g))
        out.append((int(round(wb / bottleneck_ratio)), d, g))
    return out


class RegNetBlock(nn.Module):
    """X/Y block: ReLU(short(x) + DropPath(1×1 → grouped 3×3 (stride) → [SE] → 1×1))."""

    def __init__(
        self, cin: int, cout: int, stride: int, bottleneck_ratio: float, group_width: int,
        se_ratio: float, drop_path: float,
    ) -> None:
        super().__init__()
        wb = int(round(cout * bottleneck_ratio))
        self.conv1 = ConvNormAct(cin, wb, 1)
        self.conv2 = ConvNormAct(wb, wb, 3, stride, groups=wb // group_width)
        self.se = (SqueezeExcite(wb, rd_channels=max(1, int(round(cin * se_ratio))),
                                 act_layer=nn.SiLU) if se_ratio > 0 else nn.Identity())
        self.conv3 = ConvNormAct(wb, cout, 1, apply_act=False)
        self.short = (
            nn.Identity() if stride == 1 and cin == cout else
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )
        self.drop_path = make_drop_path(drop_path)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.se(self.conv2(self.conv1(x))))
        return self.act(self.short(x) + self.drop_path(out))


@register_model(
    "regnet",
    """Default: RegNetY-400MF (depth 16, w0 48, wa 27.89, wm 2.09, group width 8, SE 0.25).

    Options: ``depth``, ``w0``, ``wa``, ``wm``, ``group_width``, ``bottleneck_ratio``,
    ``se_ratio`` (0 → RegNetX), ``stem_width``, ``drop_path_rate``.
    """,
    family="regnet", min_size=16, default_size=224, lr_mult=1.0, scheduler="onecycle",
)
class RegNet(ClassifierModel):
    """Stem → stages of RegNet blocks (widths from ``regnet_stages``) → pooled linear head."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        depth: int = 16,
        w0: int = 48,
        wa: float = 27.89,
        wm: float = 2.09,
        group_width: int = 8,
        bottleneck_ratio: float = 1.0,
        se_ratio: float = 0.25,
        stem_width: int = 32,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.stage_specs = regnet_stages(depth, w0, wa, wm, group_width, bottleneck_ratio)
        specs = self.stage_specs
        stages, cin = build_stages(
            [s[0] for s in specs], [s[1] for s in specs],
            lambda b: RegNetBlock(b.cin, b.cout, b.stride, bottleneck_ratio, specs[b.stage][2],
                                  se_ratio, b.drop_path),
            strides=[2] * len(specs), cin=stem_width, drop_path_rate=drop_path_rate, nested=True,
        )
        self.features = nn.Sequential(AdaptiveStrideConv(in_chans, stem_width), *stages)
        self._init_head(cin, num_classes, drop_rate)
        self.apply(init_weights)
