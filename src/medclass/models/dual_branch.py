"""Dual-branch network: a global large-kernel residual branch and a local space-to-depth branch.

The global branch (3x3 stem, then 7x7 residual stages that halve the resolution) gathers
context; the local branch rearranges 2x2 pixel blocks into channels (pixel-unshuffle, nothing
is discarded) and applies small 3x3 convs, keeping fine texture. Both reach the same grid
(side / 2**(len(dims)-1), ceil) and are projected to a common ``fuse_dim`` subspace, then
fused by channel concatenation (``fusion="concat"``) or a sum (``fusion="sum"``) before the
pooled linear head. Odd sides are zero-padded before each unshuffle, so any side works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from medclass.models.registry import register_model
from medclass.models.small_resnet import res7_layers
from medclass.models.stages import SmallImageNet


class SpaceToDepthConv(nn.Module):
    """Pad to an even size, pixel-unshuffle by 2 (C -> 4C, side / 2), then 3x3 conv-BN-ReLU."""

    def __init__(self, cin: int, cout: int, block: int = 2) -> None:
        super().__init__()
        self.block = block
        self.conv = ConvNormAct(cin * block * block, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.block, (-w) % self.block
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return self.conv(F.pixel_unshuffle(x, self.block))


@register_model(
    "dual_branch",
    "Global widths 16-32-64-128, local 16-32-64, concat fusion of two 128-d projections.",
    family="dual_branch", min_size=16, default_size=32, lr_mult=1.0, scheduler="onecycle",
)
class DualBranchNet(SmallImageNet):
    """Global 7x7 residual branch + local space-to-depth branch, fused before the head.

    Options: ``local_ratio``, ``fuse_dim``, ``fusion`` and those of ``SmallImageNet``
    (``dims``/``width``: at least two stages, ``kernel_size``, ``drop_rate``, ``drop_path_rate``;
    ``depths`` is fixed at one block per stage).
    """

    def __init__(self, num_classes: int, in_chans: int = 3, *, local_ratio: float = 0.5,
                 fuse_dim: int | None = None, fusion: str = "concat", **kw: Any) -> None:
        if fusion not in ("concat", "sum"):
            raise ValueError(f"fusion must be 'concat' or 'sum', got {fusion!r}")
        if kw.get("depths") is not None:
            raise TypeError("dual_branch has one block per stage: depths is not an option")
        self.fusion, self.local_ratio, self.fuse_dim = fusion, local_ratio, fuse_dim
        super().__init__(num_classes, in_chans, **kw)

    def build(self, in_chans: int, dims: tuple[int, ...], depths: Sequence[int] | None,
              kernel_size: int, drop_path_rate: float) -> int:
        if len(dims) < 2:
            raise ValueError(f"dims needs at least two stages, got {dims}")
        glob, _ = res7_layers(in_chans, dims, None, kernel_size, drop_path_rate)
        self.global_branch = nn.Sequential(*glob)
        local: list[nn.Module] = []
        lin = in_chans
        for dim in dims[1:]:
            lout = max(8, int(dim * self.local_ratio))
            local.append(SpaceToDepthConv(lin, lout))
            lin = lout
        self.local_branch = nn.Sequential(*local)
        fd = self.fuse_dim or dims[-1]
        self.proj_global = ConvNormAct(dims[-1], fd, 1)
        self.proj_local = ConvNormAct(lin, fd, 1)
        return 2 * fd if self.fusion == "concat" else fd

    def group_modules(self) -> list[nn.Module]:
        """Layer groups by depth: each global stage with the local block at its resolution."""
        glob, local = list(self.global_branch), list(self.local_branch)
        groups: list[nn.Module] = glob[:2]
        groups += [nn.ModuleList([g, loc]) for g, loc in zip(glob[2:], local, strict=True)]
        return [*groups, nn.ModuleList([self.proj_global, self.proj_local])]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Fused (B, num_features, H', W') map from both branches."""
        g = self.proj_global(self.global_branch(x))
        loc = self.proj_local(self.local_branch(x))
        return torch.cat([g, loc], dim=1) if self.fusion == "concat" else g + loc
