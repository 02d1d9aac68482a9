"""Building blocks shared by several backbone families (one place, no copies per family)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm2d, trunc_normal_
from torch import nn

__all__ = [
    "Attention",
    "ConvNormAct",
    "DropPath",
    "LayerNorm2d",
    "LayerScale",
    "MBConv",
    "Mlp",
    "SqueezeExcite",
    "TransformerBlock",
    "init_weights",
]


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) → BatchNorm2d → activation (``act=None`` for none)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        act: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        pad = dilation * (kernel - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups,
                      bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention: global pool → bottleneck MLP → sigmoid gate."""

    def __init__(self, channels: int, rd_ratio: float = 0.25, rd_channels: int | None = None):
        super().__init__()
        rd = rd_channels or max(8, int(channels * rd_ratio))
        self.reduce = nn.Conv2d(channels, rd, 1)
        self.expand = nn.Conv2d(rd, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(F.silu(self.reduce(s))))


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
            layers.append(ConvNormAct(cin, mid, 1, act=act))
        layers.append(ConvNormAct(mid if expand != 1 else cin, mid, kernel, stride, groups=mid,
                                  act=act))
        if se_ratio > 0:
            layers.append(SqueezeExcite(mid, rd_channels=max(8, int(cin * se_ratio))))
        layers.append(ConvNormAct(mid, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.short = (
            nn.Identity() if self.use_res else
            nn.Sequential(nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False)
                          if stride > 1 else nn.Identity(),
                          nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.short(x) + self.drop_path(self.block(x))


class Attention(nn.Module):
    """Multi-head self-attention over tokens (B, N, C) with ``scaled_dot_product_attention``.

    ``bias`` is an optional additive attention bias of shape (heads, N, N) (relative positions).
    """

    def __init__(self, dim: int, heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        mask = bias.unsqueeze(0).to(q.dtype) if bias is not None else None
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_drop if self.training else 0.0
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class Mlp(nn.Sequential):
    """Linear → GELU → dropout → Linear → dropout."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(drop),
                         nn.Linear(hidden, dim), nn.Dropout(drop))


class LayerScale(nn.Module):
    """Learnable per-channel residual scaling (CaiT/CoAtNet style)."""

    def __init__(self, dim: int, init: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + DropPath(LS(Attn(LN x))), then the same with an MLP."""

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
        self.attn = Attention(dim, heads, proj_drop=drop)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x), bias)))
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
