"""Inception-v4-style backbone: stem, Inception-A/B/C stages with reductions, optional aux head.

Aux-head contract (for the training loop)::

    logits = model(x)          # always a plain (B, num_classes) tensor, in train and eval mode
    loss = criterion(logits, y)
    if model.training and getattr(model, "aux_logits", None) is not None:
        loss = loss + model.aux_loss_weight * criterion(model.aux_logits, y)   # weight 0.4

Every forward (re)sets ``model.aux_logits``: the auxiliary classifier's logits (taken from the
Inception-B stage output) in train mode with ``aux_head=True``, else ``None`` — eval mode does
no aux computation. ``forward_with_aux(x)`` returns ``(logits, aux_logits)`` in one call. The
aux classifier is not part of ``get_classifier()`` (it trains with the backbone parameters);
``reset_classifier(n)`` resets both heads.

Blocks keep the Inception-v4 branch layouts (1×n / n×1 factorised convs, pooled branches), but
Inception-A/B/C merge their branches residually (concat → 1×1 conv-BN → + input → ReLU, as in
Inception-ResNet), which makes stochastic depth (``drop_path_rate``) meaningful. Channel counts
are multiples of a unit ``width`` (the paper's widths are ``width=32``: 384/1024/1536 channels).

Size rule: any side ≥ 16 px. Inputs whose shorter side is < 64 px skip the stem's first stride
(total stride 16 instead of 32), so a 28-px image still ends in a 2×2 map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import ConvNormAct
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import AdaptiveStrideConv, init_weights, make_drop_path
from medclass.models.registry import register_model


def conv(cin: int, cout: int, kernel: int | tuple[int, int] = 1, stride: int = 1) -> ConvNormAct:
    """Conv-BN-ReLU with 'same' padding; ``kernel`` may be a (kh, kw) pair (1×7, 7×1 ...)."""
    return ConvNormAct(cin, cout, kernel, stride)


def avg_branch(cin: int, cout: int) -> nn.Sequential:
    """3×3 average pool (stride 1) then a 1×1 conv: the pooled Inception branch."""
    return nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), conv(cin, cout))


def tower(cin: int, *steps: tuple) -> nn.Sequential:
    """Chained ``conv``s; each step is ``(cout, kernel)`` or ``(cout, kernel, stride)``."""
    layers = []
    for cout, *spec in steps:
        layers.append(conv(cin, cout, *spec))
        cin = cout
    return nn.Sequential(*layers)


class Branches(nn.Module):
    """Parallel branches whose outputs are concatenated along channels."""

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class Stem(nn.Module):
    """Inception-v4 stem (convs, then three 'mixed' concat steps), padded for small inputs."""

    def __init__(self, in_chans: int, u: int) -> None:
        super().__init__()
        self.conv1 = AdaptiveStrideConv(in_chans, u)
        self.convs = tower(u, (u, 3), (2 * u, 3))
        self.mixed3 = Branches(nn.MaxPool2d(3, 2, 1), conv(2 * u, 3 * u, 3, 2))  # → 5u
        self.mixed4 = Branches(  # → 6u
            tower(5 * u, (2 * u, 1), (3 * u, 3)),
            tower(5 * u, (2 * u, 1), (2 * u, (1, 7)), (2 * u, (7, 1)), (3 * u, 3)),
        )
        self.mixed5 = Branches(conv(6 * u, 6 * u, 3, 2), nn.MaxPool2d(3, 2, 1))  # → 12u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixed5(self.mixed4(self.mixed3(self.convs(self.conv1(x)))))


class InceptionBlock(nn.Module):
    """Residual Inception block: ReLU(x + DropPath(BN(1×1(concat(branches(x))))))."""

    def __init__(self, branches: Branches, cat_ch: int, ch: int, drop_path: float) -> None:
        super().__init__()
        self.branches = branches
        self.merge = ConvNormAct(cat_ch, ch, 1, apply_act=False)
        self.drop_path = make_drop_path(drop_path)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.drop_path(self.merge(self.branches(x))))


def inception_block(c: int, pool: int, one: int, *towers: nn.Module,
                    drop_path: float) -> InceptionBlock:
    """Residual block on ``c`` channels: avg-pool-1×1 and 1×1 branches, then ``towers``."""
    return InceptionBlock(Branches(avg_branch(c, pool), conv(c, one), *towers), c, c, drop_path)


def split(cin: int, cout: int) -> Branches:
    """Parallel 1×3 and 3×1 convs, concatenated (2·cout channels)."""
    return Branches(conv(cin, cout, (1, 3)), conv(cin, cout, (3, 1)))


def inception_a(u: int, drop_path: float) -> InceptionBlock:
    """35×35-grid block of the paper (12u channels): 1×1, 3×3 and double-3×3 branches."""
    c = 12 * u
    return inception_block(c, 3 * u, 3 * u, tower(c, (2 * u, 1), (3 * u, 3)),
                           tower(c, (2 * u, 1), (3 * u, 3), (3 * u, 3)), drop_path=drop_path)


def inception_b(u: int, drop_path: float) -> InceptionBlock:
    """17×17-grid block (32u channels): factorised 7×7 branches (1×7 and 7×1 convs)."""
    c = 32 * u
    seven = ((6 * u, (7, 1)), (7 * u, (1, 7)), (7 * u, (7, 1)), (8 * u, (1, 7)))
    return inception_block(c, 4 * u, 12 * u,
                           tower(c, (6 * u, 1), (7 * u, (1, 7)), (8 * u, (7, 1))),
                           tower(c, (6 * u, 1), *seven), drop_path=drop_path)


def inception_c(u: int, drop_path: float) -> InceptionBlock:
    """8×8-grid block (48u channels): branches that split into parallel 1×3 and 3×1 convs."""
    c = 48 * u
    deep = tower(c, (12 * u, 1), (14 * u, (3, 1)), (16 * u, (1, 3)))
    return inception_block(c, 8 * u, 8 * u, nn.Sequential(conv(c, 12 * u), split(12 * u, 8 * u)),
                           nn.Sequential(*deep, split(16 * u, 8 * u)), drop_path=drop_path)


def reduction_a(u: int) -> Branches:
    """Stride-2 grid reduction 12u → 32u channels (pool | 3×3 | 1×1-3×3-3×3)."""
    c = 12 * u
    return Branches(nn.MaxPool2d(3, 2, 1), conv(c, 12 * u, 3, 2),
                    tower(c, (6 * u, 1), (7 * u, 3), (8 * u, 3, 2)))


def reduction_b(u: int) -> Branches:
    """Stride-2 grid reduction 32u → 48u channels (pool | 1×1-3×3 | 1×1-1×7-7×1-3×3)."""
    c = 32 * u
    return Branches(nn.MaxPool2d(3, 2, 1), tower(c, (6 * u, 1), (6 * u, 3, 2)),
                    tower(c, (8 * u, 1), (8 * u, (1, 7)), (10 * u, (7, 1)), (10 * u, 3, 2)))


class AuxHead(nn.Module):
    """Auxiliary classifier: pool to 2×2 → 1×1 conv-BN-ReLU → dropout → linear."""

    def __init__(self, cin: int, num_classes: int, drop_rate: float) -> None:
        super().__init__()
        mid = max(8, cin // 4)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.conv = ConvNormAct(cin, mid, 1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(mid * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.conv(self.pool(x)).flatten(1)))


@register_model(
    "inception",
    """Default: width 8 (¼ of Inception-v4: 96/256/384 channels), paper depths (4, 7, 3), aux.

    Options: ``width`` (channel unit), ``depths`` (A, B, C block counts), ``aux_head``,
    ``drop_path_rate``.
    """,
    family="inception", min_size=16, default_size=224, lr_mult=1.0, scheduler="onecycle",
)
class Inception(ClassifierModel):
    """Stem → A×d0 → reduction A → B×d1 (→ aux head) → reduction B → C×d2 → pooled head."""

    aux_loss_weight: float = 0.4

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        width: int = 8,
        depths: Sequence[int] = (4, 7, 3),
        aux_head: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if width < 1 or len(depths) != 3 or min(depths) < 1:
            raise ValueError("inception: width must be ≥ 1 and depths three positive ints")
        u = width
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        d0, d1, _ = depths
        self.stem = Stem(in_chans, u)
        self.stage_a = nn.Sequential(*[inception_a(u, dpr[i]) for i in range(d0)])
        self.reduction_a = reduction_a(u)
        self.stage_b = nn.Sequential(*[inception_b(u, p) for p in dpr[d0:d0 + d1]])
        self.reduction_b = reduction_b(u)
        self.stage_c = nn.Sequential(*[inception_c(u, p) for p in dpr[d0 + d1:]])
        self._init_head(48 * u, num_classes, drop_rate)
        self.aux_drop_rate = drop_rate
        self.aux = AuxHead(32 * u, num_classes, drop_rate) if aux_head and num_classes else None
        self.aux_logits: torch.Tensor | None = None
        self.apply(init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Final 48u-channel map; sets ``self.aux_logits`` (train mode + aux head) or None."""
        x = self.stage_b(self.reduction_a(self.stage_a(self.stem(x))))
        self.aux_logits = self.aux(x) if self.training and self.aux is not None else None
        return self.stage_c(self.reduction_b(x))

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, aux_logits)``; aux is None in eval mode or without an aux head."""
        logits = self.forward(x)
        return logits, self.aux_logits

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the main and the auxiliary classifiers."""
        super().reset_classifier(num_classes)
        if self.aux is not None:
            self.aux = (AuxHead(self.aux.conv.conv.in_channels, num_classes, self.aux_drop_rate)
                        if num_classes else None)
