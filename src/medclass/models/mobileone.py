"""MobileOne (Vasu et al., 2023): train-time over-parameterised blocks, re-parameterised to plain
convs for inference.

A ``MobileOneBlock`` sums ``num_branches`` parallel k×k conv-BN branches, a 1×1 conv-BN "scale"
branch (when k > 1) and an identity BN (when stride 1 and cin == cout), then applies ReLU. A
MobileOne stage unit is a depthwise 3×3 block followed by a pointwise 1×1 block. After training,
``model.reparameterize()`` fuses every block in place into one conv with bias (same eval
outputs, far fewer ops); ``reparameterize_model(model)`` returns a fused deep copy instead.
Fusion uses BN running statistics, so compare outputs in eval mode. With ``drop_path_rate`` the
non-identity branches of identity-carrying blocks are dropped per sample (stochastic depth).

Size rule: any side ≥ 16 px. Inputs whose shorter side is < 64 px run the stem with stride 1
(total stride 16 instead of 32), so 28-px images end in a 2×2 map (before and after fusion).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import SMALL_INPUT, init_weights, make_drop_path
from medclass.models.registry import register_model
from medclass.models.stages import build_stages


def _conv(conv: nn.Conv2d, x: torch.Tensor, stride: int) -> torch.Tensor:
    """Apply ``conv`` with an explicit stride (the stem may run at stride 1 on small inputs)."""
    return F.conv2d(x, conv.weight, conv.bias, stride, conv.padding, conv.dilation, conv.groups)


def _fuse_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold eval-mode BN into a preceding bias-free conv kernel: ``(kernel', bias')``."""
    # rsqrt, not sqrt: torch.sqrt's CPU path (MKL vector math) rounds per CPU vendor
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return kernel * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class ConvBN(nn.Module):
    """Bias-free conv followed by BatchNorm: one over-parameterisation branch."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, stride: int) -> torch.Tensor:
        return self.bn(_conv(self.conv, x, stride))

    def fused(self, kernel_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel (zero-padded to ``kernel_size``) and bias equivalent to conv + eval BN."""
        pad = (kernel_size - self.conv.kernel_size[0]) // 2
        return _fuse_bn(F.pad(self.conv.weight, [pad] * 4), self.bn)


class MobileOneBlock(nn.Module):
    """ReLU(identity BN + Σ k×k conv-BN branches + 1×1 conv-BN), or ReLU(fused conv)."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
        num_branches: int = 1, drop_path: float = 0.0, adaptive_stride: bool = False,
    ) -> None:
        super().__init__()
        self.cin, self.cout, self.kernel, self.stride, self.groups = (
            cin, cout, kernel, stride, groups)
        self.adaptive_stride = adaptive_stride
        self.branches = nn.ModuleList(
            ConvBN(cin, cout, kernel, stride, groups) for _ in range(num_branches))
        self.scale = ConvBN(cin, cout, 1, stride, groups) if kernel > 1 else None
        self.identity = nn.BatchNorm2d(cout) if stride == 1 and cin == cout else None
        self.drop_path = make_drop_path(drop_path if self.identity is not None else 0.0)
        self.reparam: nn.Conv2d | None = None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        small = self.adaptive_stride and min(x.shape[-2:]) < SMALL_INPUT
        s = 1 if small else self.stride
        if self.reparam is not None:
            return self.act(_conv(self.reparam, x, s))
        out = sum(b(x, s) for b in self.branches)
        if self.scale is not None:
            out = out + self.scale(x, s)
        out = self.drop_path(out)
        if self.identity is not None:
            out = out + self.identity(x)
        return self.act(out)

    @torch.no_grad()
    def fused_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single conv kernel and bias equal to the eval-mode sum of all branches."""
        k = self.kernel
        parts = [b.fused(k) for b in self.branches]
        if self.scale is not None:
            parts.append(self.scale.fused(k))
        if self.identity is not None:
            eye = torch.zeros(self.cout, self.cin // self.groups, k, k,
                              device=self.identity.weight.device)
            per_group = self.cin // self.groups
            for c in range(self.cout):
                eye[c, c % per_group, k // 2, k // 2] = 1.0
            parts.append(_fuse_bn(eye, self.identity))
        return sum(p[0] for p in parts), sum(p[1] for p in parts)

    def reparameterize(self) -> None:
        """Replace the branches with one conv (in place); idempotent."""
        if self.reparam is not None:
            return
        kernel, bias = self.fused_kernel_bias()
        conv = nn.Conv2d(self.cin, self.cout, self.kernel, self.stride, self.kernel // 2,
                         groups=self.groups, bias=True).to(kernel.device, kernel.dtype)
        conv.weight.data.copy_(kernel)
        conv.bias.data.copy_(bias)
        self.reparam = conv
        self.branches = nn.ModuleList()
        self.scale = self.identity = None
        self.drop_path = nn.Identity()


def mobileone_unit(cin: int, cout: int, stride: int, k: int, drop_path: float) -> nn.Sequential:
    """Depthwise 3×3 MobileOne block then pointwise 1×1 MobileOne block."""
    return nn.Sequential(
        MobileOneBlock(cin, cin, 3, stride, groups=cin, num_branches=k, drop_path=drop_path),
        MobileOneBlock(cin, cout, 1, 1, num_branches=k, drop_path=drop_path),
    )


@register_model(
    "mobileone",
    """Default: MobileOne-S0 (widths 48-48-128-256-1024, depths 2-8-10-1, 4 branches).

    Options: ``widths`` (stem + one per stage), ``depths``, ``num_branches``, ``drop_path_rate``.
    """,
    family="mobileone", min_size=16, default_size=224, lr_mult=1.0, scheduler="onecycle",
)
class MobileOne(ClassifierModel):
    """Stem block (stride 2) → four stages of MobileOne units (stride 2 each) → pooled head."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        widths: Sequence[int] = (48, 48, 128, 256, 1024),
        depths: Sequence[int] = (2, 8, 10, 1),
        num_branches: int = 4,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(widths) != len(depths) + 1 or min(depths) < 1 or num_branches < 1:
            raise ValueError("mobileone: widths needs the stem width plus one per stage in "
                             "depths; depths and num_branches must be ≥ 1")
        stages, cout = build_stages(
            widths[1:], depths,
            lambda b: mobileone_unit(b.cin, b.cout, b.stride, num_branches, b.drop_path),
            strides=(2,) * len(depths), cin=widths[0], drop_path_rate=drop_path_rate, nested=True,
        )
        self.features = nn.Sequential(
            MobileOneBlock(in_chans, widths[0], 3, 2, adaptive_stride=True), *stages)
        self._init_head(cout, num_classes, drop_rate)
        self.apply(init_weights)

    def reparameterize(self) -> MobileOne:
        """Fuse every MobileOne block into a single conv, in place; returns ``self``."""
        for m in self.modules():
            if isinstance(m, MobileOneBlock):
                m.reparameterize()
        return self

    @property
    def is_reparameterized(self) -> bool:
        return all(m.reparam is not None for m in self.modules() if isinstance(m, MobileOneBlock))


def reparameterize_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every MobileOne block fused (the original is untouched)."""
    fused = copy.deepcopy(model)
    for m in fused.modules():
        if isinstance(m, MobileOneBlock):
            m.reparameterize()
    return fused
