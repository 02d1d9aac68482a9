"""DenseNet with 7x7 kernels and no spatial reduction in the dense part, for small images.

A DenseNet-BC variant for 28-64 px inputs: every dense layer is a 1x1 bottleneck followed by a
7x7 conv (a wide receptive field without pooling), and transitions only compress channels.
Larger inputs are average-pooled by 2 in the stem until their longest side is at most
``max_dense_size`` (64 by default), so a 224 px image is processed at 56 px instead of at
full resolution; ``max_dense_size=None`` keeps every input at full resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import DropPath, init_weights
from medclass.models.registry import register_model


class FitPool(nn.Module):
    """Average-pool by 2 (ceil mode) until the longest side is at most ``max_size``."""

    def __init__(self, max_size: int | None) -> None:
        super().__init__()
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_dense_size must be a positive int or None, got {max_size}")
        self.max_size = max_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.max_size is None:
            return x
        while max(x.shape[-2:]) > self.max_size:
            x = F.avg_pool2d(x, 2, ceil_mode=True)
        return x

    def extra_repr(self) -> str:
        return f"max_size={self.max_size}"


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 bottleneck, BN-ReLU-kxk conv; returns the input with ``growth`` new channels.

    Stochastic depth drops (and rescales) the new channels per sample.
    """

    def __init__(
        self, cin: int, growth: int, bn_size: int, kernel: int = 7, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        mid = bn_size * growth
        self.block = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            nn.Conv2d(cin, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.Conv2d(mid, growth, kernel, padding=kernel // 2, bias=False),
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.drop_path(self.block(x))], dim=1)


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv that compresses channels and keeps the spatial size."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False))


@register_model(
    "densenet7x7",
    "Growth 12, blocks 3-3-3, 7x7 kernels; inputs above 64 px are pooled to <= 64 px.",
    family="densenet", min_size=16, default_size=32, lr_mult=1.0, scheduler="onecycle",
)
class DenseNet7x7(ClassifierModel):
    """Stem conv, dense blocks of 7x7 layers joined by channel-only transitions, BN-ReLU."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        growth_rate: int = 12,
        block_config: Sequence[int] = (3, 3, 3),
        bn_size: int = 2,
        compression: float = 0.5,
        kernel_size: int = 7,
        max_dense_size: int | None = 64,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if not block_config or min(block_config) < 1:
            raise ValueError(f"block_config needs positive layer counts, got {block_config}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the spatial size, got {kernel_size}")
        if not 0 < compression <= 1:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        stem_ch = 2 * growth_rate
        layers: list[nn.Module] = [
            nn.Conv2d(in_chans, stem_ch, 3, padding=1, bias=False),
            FitPool(max_dense_size),
        ]
        n_layers = sum(block_config)
        rates = torch.linspace(0, drop_path_rate, n_layers).tolist()
        ch, idx = stem_ch, 0
        for b, n in enumerate(block_config):
            for _ in range(n):
                layers.append(DenseLayer(ch, growth_rate, bn_size, kernel_size, rates[idx]))
                ch += growth_rate
                idx += 1
            if b < len(block_config) - 1:
                out = max(growth_rate, int(ch * compression))
                layers.append(Transition(ch, out))
                ch = out
        layers += [nn.BatchNorm2d(ch), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self._init_head(ch, num_classes, drop_rate)
        self.apply(init_weights)
