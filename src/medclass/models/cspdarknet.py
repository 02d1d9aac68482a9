"""CSPDarknet (Wang et al., 2020; Bochkovskiy et al., 2020): cross-stage-partial Darknet stages.

Each stage downsamples with a 3×3 stride-2 conv, then splits the channels into two halves by
1×1 convs: one half runs through Darknet residual blocks (1×1 → 3×3) and a 1×1 transition, the
other skips them (the cross-stage partial connection); the halves are concatenated and fused
by a final 1×1 transition. Stride-2 convs pad, so odd sides work (28 px → 14 → 7 → 4 → 2 → 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import ConvNormAct, DropPath, init_weights
from medclass.models.registry import register


def _act(name: str) -> type[nn.Module]:
    """``leaky`` → LeakyReLU(0.1) (CSPDarknet53), ``mish`` → Mish (YOLOv4 backbone)."""
    if name == "leaky":
        return _Leaky
    if name == "mish":
        return nn.Mish
    raise TypeError(f"act must be 'leaky' or 'mish', got {name!r}")


class _Leaky(nn.LeakyReLU):
    """LeakyReLU with Darknet's 0.1 slope, constructible without arguments."""

    def __init__(self) -> None:
        super().__init__(0.1, inplace=True)


class DarkBlock(nn.Module):
    """Darknet residual block: 1×1 (hidden) → 3×3 (back to ``dim``), added to the input."""

    def __init__(self, dim: int, hidden: int, act: type[nn.Module], drop_path: float = 0.0):
        super().__init__()
        self.conv1 = ConvNormAct(dim, hidden, 1, act=act)
        self.conv2 = ConvNormAct(hidden, dim, 3, act=act)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.conv2(self.conv1(x)))


class CSPStage(nn.Module):
    """Downsample → split (two 1×1) → blocks + 1×1 on one half → concat → 1×1 fuse."""

    def __init__(self, cin: int, cout: int, depth: int, stride: int, act: type[nn.Module],
                 drop_paths: Sequence[float]) -> None:
        super().__init__()
        half = cout // 2
        self.down = ConvNormAct(cin, cout, 3, stride, act=act)
        self.split_skip = ConvNormAct(cout, half, 1, act=act)
        self.split_main = ConvNormAct(cout, half, 1, act=act)
        self.blocks = nn.Sequential(*(DarkBlock(half, half, act, dp) for dp in drop_paths[:depth]))
        self.transition = ConvNormAct(half, half, 1, act=act)
        self.fuse = ConvNormAct(2 * half, cout, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        main = self.transition(self.blocks(self.split_main(x)))
        return self.fuse(torch.cat([self.split_skip(x), main], dim=1))


class CSPDarknet(ClassifierModel):
    """3×3 stem conv (stride 1) → five CSP stages, each halving the side."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        width: int = 32,
        depths: Sequence[int] = (1, 2, 8, 8, 4),
        stem_stride: int = 2,
        act: str = "leaky",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if not depths or min(depths) < 1 or width < 2:
            raise TypeError("depths must be non-empty with every depth ≥ 1; width ≥ 2")
        if stem_stride not in (1, 2):
            raise TypeError(f"stem_stride must be 1 or 2, got {stem_stride}")
        act_cls = _act(act)
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        stem_w = max(width // 2, 8)
        layers: list[nn.Module] = [ConvNormAct(in_chans, stem_w, 3, act=act_cls)]
        cin, k = stem_w, 0
        for i, depth in enumerate(depths):
            cout = width * 2**i
            stride = stem_stride if i == 0 else 2
            layers.append(CSPStage(cin, cout, depth, stride, act_cls, dpr[k:k + depth]))
            cin, k = cout, k + depth
        self.features = nn.Sequential(*layers)
        self._init_head(cin, num_classes, drop_rate)
        self.apply(init_weights)


@register("cspdarknet", family="cnn", min_size=16, default_size=224, lr_mult=1.0,
          scheduler="onecycle")
def cspdarknet(num_classes: int, in_chans: int = 3, drop_rate: float = 0.0,
               **kw) -> CSPDarknet:
    """CSPDarknet53 layout (1-2-8-8-4) at half width (stages 32…512, ~7 M params)."""
    return CSPDarknet(num_classes, in_chans, drop_rate=drop_rate, **kw)
