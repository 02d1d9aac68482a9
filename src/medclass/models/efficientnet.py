"""EfficientNet (Tan & Le, 2019): compound-scaled MBConv stages (inverted residual + SE, SiLU).

``width_mult`` scales every channel count (rounded to a multiple of 8) and ``depth_mult`` the
number of blocks per stage (rounded up); (1.0, 1.0) is B0, (1.0, 1.1) B1, (1.1, 1.2) B2, ...
Blocks are the shared :class:`~medclass.models.layers.MBConv`; stride-2 convs pad, so odd sides
work (28 px → 14 → 7 → 4 → 2 → 1 with the default ``stem_stride=2``).
"""

from __future__ import annotations

import math

from timm.layers import ConvNormAct, make_divisible
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import MBConv, init_weights
from medclass.models.registry import register_model
from medclass.models.stages import build_stages

# B0 stages: (expand ratio, kernel, stride, out channels, repeats)
B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


def mbconv(cin: int, cout: int, stride: int, expand: float, kernel: int,
           drop_path: float) -> MBConv:
    """Shared MBConv (SE ratio 0.25 of the input width, SiLU) safe for odd input sides.

    The block's stride-2 projection shortcut average-pools with ``ceil_mode`` so its output
    side matches the padded depthwise conv (⌈n/2⌉) when n is odd.
    """
    block = MBConv(cin, cout, stride, expand, kernel, se_ratio=0.25, drop_path=drop_path)
    if stride > 1 and isinstance(block.short, nn.Sequential):
        block.short[0] = nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False)
    return block


@register_model(
    "efficientnet",
    "EfficientNet-B0 (``width_mult=1.0, depth_mult=1.0``, ~4 M params with a small head).",
    family="cnn", min_size=16, default_size=224, lr_mult=1.0, scheduler="onecycle",
)
class EfficientNet(ClassifierModel):
    """Stem conv → seven MBConv stages → 1×1 head conv → pooled linear classifier."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        stem_stride: int = 2,
        head_chs: int | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if width_mult <= 0 or depth_mult <= 0:
            raise TypeError("width_mult and depth_mult must be positive")
        if stem_stride not in (1, 2):
            raise TypeError(f"stem_stride must be 1 or 2, got {stem_stride}")
        self.width_mult, self.depth_mult = width_mult, depth_mult

        def ch(c: int) -> int:
            return make_divisible(c * width_mult, 8)

        stages, cin = build_stages(
            [ch(s[3]) for s in B0_STAGES],
            [math.ceil(s[4] * depth_mult) for s in B0_STAGES],
            lambda b: mbconv(b.cin, b.cout, b.stride, B0_STAGES[b.stage][0],
                             B0_STAGES[b.stage][1], b.drop_path),
            strides=[s[2] for s in B0_STAGES], cin=ch(32), drop_path_rate=drop_path_rate,
            nested=True,
        )
        num_features = head_chs or ch(1280)
        self.features = nn.Sequential(
            ConvNormAct(in_chans, ch(32), 3, stem_stride, act_layer=nn.SiLU), *stages,
            ConvNormAct(cin, num_features, 1, act_layer=nn.SiLU),
        )
        self._init_head(num_features, num_classes, drop_rate)
        self.apply(init_weights)
