"""Building blocks shared by several backbone families: timm.layers bricks plus the few of ours.

The generic bricks (``ConvNormAct``, ``SqueezeExcite``, ``Mlp``, ``Attention``, ``DropPath``,
``LayerScale``, ``LayerNorm2d``) are timm's and re-exported here for older imports. Ours are only
the ones timm has no public equivalent for: ``AdaptiveStrideConv`` (a stem conv whose stride
follows the input size), ``MBConv`` (timm's lives in private ``timm.models`` internals) and
``TransformerBlock`` (timm's ``Block`` is not in ``timm.layers`` and takes no attention bias).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import (
    Attention,
    ConvNormAct,
    DropPath,
    LayerNorm2d,
    LayerScale,
    Mlp,
    SqueezeExcite,
    trunc_normal_,
)
from torch import nn

__all__ = [
    "SMALL_INPUT",
    "AdaptiveStrideConv",
    "Attention",
    "ConvNormAct",
    "DropPath",
    "LayerNorm2d",
    "LayerScale",
    "MBConv",
    "Mlp",
    "SqueezeExcite",
    "TransformerBlock",
    "make_drop_path",
    "init_weights",
]

SMALL_INPUT = 64  # stems keep full resolution (stride 1) for inputs with a shorter side below this


def make_drop_path(rate: float) -> nn.Module:
    """timm's ``DropPath`` for a positive rate, else ``nn.Identity`` (nothing to trace)."""
    return DropPath(rate) if rate > 0 else nn.Identity()


class AdaptiveStrideConv(ConvNormAct):
    """3×3 conv-BN-act that strides by 2 only when the input's shorter side is ≥ ``min_side``.

    One set of weights serves large images (down-sample) and tiny ones (keep resolution); timm's
    ``ConvNormAct`` has a fixed stride, hence this subclass.
    """

    def __init__(self, cin: int, cout: int, min_side: int = SMALL_INPUT,
                 act: type[nn.Module] | None = nn.ReLU) -> None:
        super().__init__(cin, cout, 3, 2, act_layer=act)
        self.min_side = min_side

    def stride(self, h: int, w: int) -> int:
        """Stride used for an h×w input."""
        return 2 if min(h, w) >= self.min_side else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride(*x.shape[-2:])
        return self.bn(F.conv2d(x, self.conv.weight, None, s, self.conv.padding))


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand → depthwise k×k → SE → 1×1 project (+ residual)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int = 1,
        expand: float = 4.0,
        kernel: int = 3,
        se_ratio: float = 0.25,
        drop_path: float = 0.0,
        act: type[nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        mid = max(8, int(round(cin * expand)))
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvNormAct(cin, mid, 1, act_layer=act))
        layers.append(ConvNormAct(mid if expand != 1 else cin, mid, kernel, stride, groups=mid,
                                  act_layer=act))
        if se_ratio > 0:
            layers.append(SqueezeExcite(mid, rd_channels=max(8, int(cin * se_ratio)),
                                        act_layer=nn.SiLU))
        layers.append(ConvNormAct(mid, cout, 1, apply_act=False))
        self.block = nn.Sequential(*layers)
        self.drop_path = make_drop_path(drop_path)
        self.short = (
            nn.Identity() if self.use_res else
            nn.Sequential(nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False)
                          if stride > 1 else nn.Identity(),
                          nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.short(x) + self.drop_path(self.block(x))


class TransformerBlock(nn.Module):
    """Pre-norm block on timm bricks: x + DropPath(LS(Attn(LN x))), then the same with an MLP.

    ``bias`` is an optional additive attention bias of shape (heads, N, N) (relative positions).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        layer_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, qkv_bias=True, proj_drop=drop)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        mask = bias.unsqueeze(0).to(x.dtype) if bias is not None else None
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x), attn_mask=mask)))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


def init_weights(module: nn.Module) -> None:
    """Truncated-normal Linear weights, zero biases; Kaiming conv weights (``model.apply``)."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
