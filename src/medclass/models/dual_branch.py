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
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import ConvNormAct, init_weights
from medclass.models.registry import register
from medclass.models.small_resnet import ResBlock7


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


class DualBranchNet(ClassifierModel):
    """Global 7x7 residual branch + local space-to-depth branch, fused before the head."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        dims: Sequence[int] | None = None,
        width: int | None = None,
        local_ratio: float = 0.5,
        fuse_dim: int | None = None,
        fusion: str = "concat",
        kernel_size: int = 7,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if dims is not None and width is not None:
            raise TypeError("give either width or dims, not both")
        if dims is None:
            w = 16 if width is None else width
            dims = (w, 2 * w, 4 * w, 8 * w)
        if len(dims) < 2:
            raise ValueError(f"dims needs at least two stages, got {dims}")
        if fusion not in ("concat", "sum"):
            raise ValueError(f"fusion must be 'concat' or 'sum', got {fusion!r}")
        self.fusion = fusion
        rates = torch.linspace(0, drop_path_rate, len(dims)).tolist()
        glob: list[nn.Module] = [ConvNormAct(in_chans, dims[0], 3)]
        cin = dims[0]
        for i, dim in enumerate(dims):
            glob.append(ResBlock7(cin, dim, 2 if i > 0 else 1, kernel_size, rates[i]))
            cin = dim
        self.global_branch = nn.Sequential(*glob)
        local: list[nn.Module] = []
        lin = in_chans
        for dim in dims[1:]:
            lout = max(8, int(dim * local_ratio))
            local.append(SpaceToDepthConv(lin, lout))
            lin = lout
        self.local_branch = nn.Sequential(*local)
        fd = fuse_dim or dims[-1]
        self.proj_global = ConvNormAct(dims[-1], fd, 1)
        self.proj_local = ConvNormAct(lin, fd, 1)
        self._init_head(2 * fd if fusion == "concat" else fd, num_classes, drop_rate)
        self.apply(init_weights)

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


@register("dual_branch", family="dual_branch", min_size=16, default_size=32, lr_mult=1.0,
          scheduler="onecycle")
def dual_branch(
    num_classes: int, in_chans: int = 3, drop_rate: float = 0.0, **kw: Any
) -> DualBranchNet:
    """Global widths 16-32-64-128, local 16-32-64, concat fusion of two 128-d projections."""
    return DualBranchNet(num_classes, in_chans, drop_rate=drop_rate, **kw)
