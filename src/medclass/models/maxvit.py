"""MaxViT: every block is MBConv → block (local window) attention → grid (dilated) attention.

Layout (Tu et al. 2022): conv stem (stride 2) and four stages whose first block strides by 2 in
its MBConv (total stride 32). Both attentions are pre-norm with a relative-position bias
(``swin.RelPosBias``) and an MLP. Block attention uses contiguous P×P windows, grid attention a
G×G grid of tokens spaced across the whole map (P = G = ``window``).

Any input side works (registered minimum 16 px): the stem only strides when the input side is at
least ``small_input_side`` (default 64); windows/grids are fitted to each map (``fit_window``: a
side of S is split into ceil(S/window) equal parts) and the map is padded to that, with padded keys
masked; odd maps are zero-padded to even before a strided MBConv.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct, LayerNorm2d
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.coatnet import EvenPad
from medclass.models.layers import AdaptiveStrideConv, MBConv, init_weights
from medclass.models.registry import register_model
from medclass.models.stages import build_stages
from medclass.models.swin import (
    WindowBlock,
    fit_window,
    grid_partition,
    grid_reverse,
    label_mask,
    window_partition,
    window_reverse,
)


class PartitionBlock(WindowBlock):
    """Pre-norm block attention (``grid=False``) or grid attention + MLP on NHWC maps."""

    def __init__(self, dim: int, heads: int, size: int, grid: bool, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0) -> None:
        super().__init__(dim, heads, size, mlp_ratio, drop_path)
        self.grid = grid

    def attend(self, y: torch.Tensor) -> torch.Tensor:
        """Block or grid attention, padding the map to whole partitions (padded keys masked)."""
        _, h, w, _ = y.shape
        ph, pw = fit_window(h, self.window), fit_window(w, self.window)
        hp, wp = -(-h // ph) * ph, -(-w // pw) * pw
        part, rev = (grid_partition, grid_reverse) if self.grid else (window_partition,
                                                                        window_reverse)
        y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
        bias = self.rel(ph, pw)
        if hp != h or wp != w:
            labels = torch.zeros(hp, wp, dtype=torch.long, device=y.device)
            labels[h:] = -1
            labels[:, w:] = -1
            bias = bias + label_mask(part(labels[None, :, :, None], ph, pw)[0, ..., 0])
        return rev(self.attn(part(y, ph, pw), bias), ph, pw, hp, wp)[:, :h, :w]


class MaxViTBlock(nn.Module):
    """MBConv (optionally strided) → block attention → grid attention; NCHW in and out."""

    def __init__(self, cin: int, cout: int, stride: int, heads: int, size: int,
                 mlp_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.pad = EvenPad() if stride > 1 else nn.Identity()
        self.conv = MBConv(cin, cout, stride, drop_path=drop_path, act=nn.GELU)
        self.block_attn = PartitionBlock(cout, heads, size, False, mlp_ratio, drop_path)
        self.grid_attn = PartitionBlock(cout, heads, size, True, mlp_ratio, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pad(x)).permute(0, 2, 3, 1)
        return self.grid_attn(self.block_attn(x)).permute(0, 3, 1, 2)


@register_model(
    "maxvit",
    'MaxViT-"nano": stem 32, dims 32-64-128-256, depths 2-2-5-2, window/grid 7 (~8 M).',
    family="maxvit", min_size=16, default_size=224, lr_mult=0.5, scheduler="cosine",
)
class MaxViT(ClassifierModel):
    """Conv stem → MaxViT stages → LayerNorm → pooled linear head."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        stem_dim: int = 32,
        dims: Sequence[int] = (32, 64, 128, 256),
        depths: Sequence[int] = (2, 2, 5, 2),
        head_dim: int = 32,
        window: int = 7,
        mlp_ratio: float = 4.0,
        small_input_side: int = 64,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        blocks, cout = build_stages(
            dims, depths,
            lambda b: MaxViTBlock(b.cin, b.cout, b.stride, max(1, b.cout // head_dim), window,
                                  mlp_ratio, b.drop_path),
            strides=(2,) * len(dims), cin=stem_dim, drop_path_rate=drop_path_rate,
        )
        self.features = nn.Sequential(
            AdaptiveStrideConv(in_chans, stem_dim, small_input_side, act=nn.GELU),
            ConvNormAct(stem_dim, stem_dim, 3, act_layer=nn.GELU), *blocks, LayerNorm2d(cout),
        )
        self._init_head(cout, num_classes, drop_rate)
        self.apply(init_weights)
