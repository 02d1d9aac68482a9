"""Swin Transformer: shifted-window attention with relative position bias and patch merging.

Any input side works (registered minimum 16 px): the image is padded to a multiple of the patch,
patch merging pads odd maps, and every block fits its window to the map it sees: a side of S
tokens is cut into ``ceil(S / window)`` equal windows of at most ``window`` tokens (``fit_window``)
and padded up to that; padded keys are masked out. A side that fits in one window is not shifted.

This file also holds the window machinery reused by CoAtNet and MaxViT (``RelPosBias``,
``WindowAttention``, window/grid partitioning, ``label_mask``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import Attention, Mlp, trunc_normal_
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import init_weights, make_drop_path
from medclass.models.registry import register_model
from medclass.models.stages import build_stages

MASK_VALUE = -100.0  # additive bias that removes a key (finite: fully masked rows stay finite)


def fit_window(size: int, window: int) -> int:
    """Window side for a map side ``size``: ceil(size/window) equal windows of side ≤ window."""
    n = -(-size // window)
    return -(-size // n)


def window_partition(x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    """(B, H, W, C) → (B, nW, wh*ww, C): contiguous wh×ww windows."""
    b, h, w, c = x.shape
    x = x.view(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, -1, wh * ww, c)


def window_reverse(x: torch.Tensor, wh: int, ww: int, h: int, w: int) -> torch.Tensor:
    """Inverse of ``window_partition``."""
    b, c = x.shape[0], x.shape[-1]
    x = x.view(b, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def grid_partition(x: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
    """(B, H, W, C) → (B, nW, gh*gw, C): dilated gh×gw grids spanning the whole map (MaxViT)."""
    b, h, w, c = x.shape
    x = x.view(b, gh, h // gh, gw, w // gw, c).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, -1, gh * gw, c)


def grid_reverse(x: torch.Tensor, gh: int, gw: int, h: int, w: int) -> torch.Tensor:
    """Inverse of ``grid_partition``."""
    b, c = x.shape[0], x.shape[-1]
    x = x.view(b, h // gh, w // gw, gh, gw, c).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, h, w, c)


def label_mask(labels: torch.Tensor) -> torch.Tensor:
    """(nW, N) integer labels → (nW, 1, N, N) additive mask.

    A query may attend to a key only when both carry the same label; label -1 marks padding,
    which is never attended to.
    """
    q, k = labels[:, :, None], labels[:, None, :]
    blocked = (q != k) | (k < 0)
    mask = torch.zeros(blocked.shape, device=labels.device).masked_fill(blocked, MASK_VALUE)
    return mask[:, None]


class RelPosBias(nn.Module):
    """Learned relative-position bias for windows of up to ``size``×``size`` tokens.

    Smaller windows use the central part of the table; larger ones a bilinear resize of it.
    ``forward(h, w)`` returns the (heads, h*w, h*w) bias for an h×w window.
    """

    def __init__(self, heads: int, size: int) -> None:
        super().__init__()
        self.size = size
        self.table = nn.Parameter(torch.zeros(heads, 2 * size - 1, 2 * size - 1))
        trunc_normal_(self.table, std=0.02)

    def no_weight_decay(self) -> set[str]:
        """timm's convention: parameter names exempt from weight decay (the bias table)."""
        return {"table"}

    def forward(self, h: int, w: int) -> torch.Tensor:
        s = self.size
        if h <= s and w <= s:
            table = self.table[:, s - h : s + h - 1, s - w : s + w - 1]
        else:
            table = F.interpolate(self.table[None], size=(2 * h - 1, 2 * w - 1), mode="bilinear",
                                  align_corners=True)[0]
        dev = self.table.device
        ys, xs = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev),
                                indexing="ij")
        coords = torch.stack([ys.flatten(), xs.flatten()], dim=1)
        rel = coords[:, None] - coords[None] + torch.tensor([h - 1, w - 1], device=dev)
        return table.flatten(1)[:, rel[..., 0] * (2 * w - 1) + rel[..., 1]]


class WindowAttention(Attention):
    """timm's ``Attention`` (qkv bias on) applied independently inside windows: x is (B, nW, N, C).

    ``bias`` is (heads, N, N) shared by all windows, or (nW, heads, N, N) per window.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__(dim, heads, qkv_bias=True)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b, nw, n, c = x.shape
        if bias is not None:
            if bias.dim() == 4:  # per window: repeat over the batch, (B*nW, heads, N, N)
                bias = bias.unsqueeze(0).expand(b, -1, -1, -1, -1).flatten(0, 1)
            else:
                bias = bias.unsqueeze(0)
            bias = bias.to(x.dtype)
        return super().forward(x.reshape(b * nw, n, c), attn_mask=bias).view(b, nw, n, c)


def _shift_labels(h: int, w: int, hp: int, wp: int, win: tuple[int, int],
                  shift: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(hp, wp) region labels in the rolled frame: Swin's shifted-window regions, -1 = padding."""
    labels = torch.zeros(hp, wp, dtype=torch.long, device=device)
    def cuts(n: int, win_: int, s: int) -> list[slice]:
        return [slice(0, n - win_), slice(n - win_, n - s), slice(n - s, n)] if s else [slice(0, n)]
    for i, hs in enumerate(cuts(hp, win[0], shift[0])):
        for j, ws in enumerate(cuts(wp, win[1], shift[1])):
            labels[hs, ws] = 3 * i + j
    valid = torch.zeros(hp, wp, dtype=torch.bool, device=device)
    valid[:h, :w] = True
    valid = torch.roll(valid, (-shift[0], -shift[1]), (0, 1))
    return labels.masked_fill(~valid, -1)


class WindowBlock(nn.Module):
    """Pre-norm residual ``attend`` (window attention, set by subclasses) + MLP on NHWC maps."""

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads)
        self.rel = RelPosBias(heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = make_drop_path(drop_path)

    def attend(self, y: torch.Tensor) -> torch.Tensor:
        """Attention over the normalised (B, H, W, C) map; same shape out."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attend(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinBlock(WindowBlock):
    """(Shifted-)window attention + MLP on NHWC maps, pre-norm residuals."""

    def __init__(self, dim: int, heads: int, window: int, shift: bool, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0) -> None:
        super().__init__(dim, heads, window, mlp_ratio, drop_path)
        self.shift = shift

    def geometry(self, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """Fitted window (wh, ww) and cyclic shift (sh, sw) for an h×w map."""
        wh, ww = fit_window(h, self.window), fit_window(w, self.window)
        sh = wh // 2 if self.shift and h > wh else 0
        sw = ww // 2 if self.shift and w > ww else 0
        return (wh, ww), (sh, sw)

    def attend(self, y: torch.Tensor) -> torch.Tensor:
        """Shifted-window attention, padding the map to whole windows (padded keys masked)."""
        _, h, w, _ = y.shape
        (wh, ww), (sh, sw) = self.geometry(h, w)
        hp, wp = -(-h // wh) * wh, -(-w // ww) * ww
        y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
        if sh or sw:
            y = torch.roll(y, (-sh, -sw), (1, 2))
        bias = self.rel(wh, ww)
        if sh or sw or hp != h or wp != w:
            labels = _shift_labels(h, w, hp, wp, (wh, ww), (sh, sw), y.device)
            bias = bias + label_mask(window_partition(labels[None, :, :, None], wh, ww)[0, ..., 0])
        y = window_reverse(self.attn(window_partition(y, wh, ww), bias), wh, ww, hp, wp)
        if sh or sw:
            y = torch.roll(y, (sh, sw), (1, 2))
        return y[:, :h, :w]


class PatchMerging(nn.Module):
    """2×2 neighbourhood concat (odd sides zero-padded) → LayerNorm → linear to ``cout``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * cin)
        self.reduction = nn.Linear(4 * cin, cout, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class PatchEmbed(nn.Module):
    """Pad to a multiple of ``patch``, non-overlapping patch conv, LayerNorm; NCHW → NHWC."""

    def __init__(self, in_chans: int, dim: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_chans, dim, patch, patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch
        x = F.pad(x, (0, -x.shape[-1] % p, 0, -x.shape[-2] % p))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class ToNCHW(nn.Module):
    """NHWC → NCHW."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


@register_model(
    "swin",
    'Swin-"nano": dims 48-96-192-384, depths 2-2-6-2, window 7, patch 4 (~7 M params).',
    family="swin", min_size=16, default_size=224, lr_mult=0.5, scheduler="cosine",
)
class Swin(ClassifierModel):
    """Patch embed → stages of (patch merging +) alternating window / shifted-window blocks."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        dims: Sequence[int] = (48, 96, 192, 384),
        depths: Sequence[int] = (2, 2, 6, 2),
        head_dim: int = 24,
        window: int = 7,
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        blocks, _ = build_stages(
            dims, depths,
            lambda b: SwinBlock(b.cout, max(1, b.cout // head_dim), window, b.index % 2 == 1,
                                mlp_ratio, b.drop_path),
            strides=(1,) * len(dims), drop_path_rate=drop_path_rate,
            transition=lambda i, cin, cout: (PatchMerging(cin, cout), cout) if i else None,
        )
        self.features = nn.Sequential(PatchEmbed(in_chans, dims[0], patch_size), *blocks,
                                      nn.LayerNorm(dims[-1]), ToNCHW())
        self._init_head(dims[-1], num_classes, drop_rate)
        self.apply(init_weights)
