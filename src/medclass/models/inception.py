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
import torch.nn.functional as F
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import ConvNormAct, DropPath, init_weights
from medclass.models.registry import register

SMALL_INPUT = 64  # inputs with a shorter side below this skip the stem's first stride


def conv(cin: int, cout: int, kernel: int | tuple[int, int] = 1, stride: int = 1) -> nn.Module:
    """Conv-BN-ReLU with 'same' padding; ``kernel`` may be a (kh, kw) pair (1×7, 7×1 ...)."""
    if isinstance(kernel, int):
        return ConvNormAct(cin, cout, kernel, stride)
    pad = (kernel[0] // 2, kernel[1] // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, pad, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def avg_branch(cin: int, cout: int) -> nn.Sequential:
    """3×3 average pool (stride 1) then a 1×1 conv: the pooled Inception branch."""
    return nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), conv(cin, cout))


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
        self.conv1 = ConvNormAct(in_chans, u, 3, 2)
        self.convs = nn.Sequential(conv(u, u, 3), conv(u, 2 * u, 3))
        self.mixed3 = Branches(nn.MaxPool2d(3, 2, 1), conv(2 * u, 3 * u, 3, 2))  # → 5u
        self.mixed4 = Branches(  # → 6u
            nn.Sequential(conv(5 * u, 2 * u), conv(2 * u, 3 * u, 3)),
            nn.Sequential(conv(5 * u, 2 * u), conv(2 * u, 2 * u, (1, 7)),
                          conv(2 * u, 2 * u, (7, 1)), conv(2 * u, 3 * u, 3)),
        )
        self.mixed5 = Branches(conv(6 * u, 6 * u, 3, 2), nn.MaxPool2d(3, 2, 1))  # → 12u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < SMALL_INPUT:  # same weights, stride 1
            c = self.conv1[0]
            x = self.conv1[2](self.conv1[1](F.conv2d(x, c.weight, None, 1, c.padding)))
        else:
            x = self.conv1(x)
        return self.mixed5(self.mixed4(self.mixed3(self.convs(x))))


class InceptionBlock(nn.Module):
    """Residual Inception block: ReLU(x + DropPath(BN(1×1(concat(branches(x))))))."""

    def __init__(self, branches: Branches, cat_ch: int, ch: int, drop_path: float) -> None:
        super().__init__()
        self.branches = branches
        self.merge = ConvNormAct(cat_ch, ch, 1, act=None)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.drop_path(self.merge(self.branches(x))))


def inception_a(u: int, drop_path: float) -> InceptionBlock:
    """35×35-grid block of the paper (12u channels): 1×1, 3×3 and double-3×3 branches."""
    c = 12 * u
    return InceptionBlock(Branches(
        avg_branch(c, 3 * u),
        conv(c, 3 * u),
        nn.Sequential(conv(c, 2 * u), conv(2 * u, 3 * u, 3)),
        nn.Sequential(conv(c, 2 * u), conv(2 * u, 3 * u, 3), conv(3 * u, 3 * u, 3)),
    ), 12 * u, c, drop_path)


def inception_b(u: int, drop_path: float) -> InceptionBlock:
    """17×17-grid block (32u channels): factorised 7×7 branches (1×7 and 7×1 convs)."""
    c = 32 * u
    return InceptionBlock(Branches(
        avg_branch(c, 4 * u),
        conv(c, 12 * u),
        nn.Sequential(conv(c, 6 * u), conv(6 * u, 7 * u, (1, 7)), conv(7 * u, 8 * u, (7, 1))),
        nn.Sequential(conv(c, 6 * u), conv(6 * u, 6 * u, (7, 1)), conv(6 * u, 7 * u, (1, 7)),
                      conv(7 * u, 7 * u, (7, 1)), conv(7 * u, 8 * u, (1, 7))),
    ), 32 * u, c, drop_path)


def inception_c(u: int, drop_path: float) -> InceptionBlock:
    """8×8-grid block (48u channels): branches that split into parallel 1×3 and 3×1 convs."""
    c = 48 * u
    return InceptionBlock(Branches(
        avg_branch(c, 8 * u),
        conv(c, 8 * u),
        nn.Sequential(conv(c, 12 * u), Branches(conv(12 * u, 8 * u, (1, 3)),
                                                conv(12 * u, 8 * u, (3, 1)))),
        nn.Sequential(conv(c, 12 * u), conv(12 * u, 14 * u, (3, 1)),
                      conv(14 * u, 16 * u, (1, 3)),
                      Branches(conv(16 * u, 8 * u, (1, 3)), conv(16 * u, 8 * u, (3, 1)))),
    ), 48 * u, c, drop_path)


def reduction_a(u: int) -> Branches:
    """Stride-2 grid reduction 12u → 32u channels (pool | 3×3 | 1×1-3×3-3×3)."""
    c = 12 * u
    return Branches(nn.MaxPool2d(3, 2, 1), conv(c, 12 * u, 3, 2),
                    nn.Sequential(conv(c, 6 * u), conv(6 * u, 7 * u, 3), conv(7 * u, 8 * u, 3, 2)))


def reduction_b(u: int) -> Branches:
    """Stride-2 grid reduction 32u → 48u channels (pool | 1×1-3×3 | 1×1-1×7-7×1-3×3)."""
    c = 32 * u
    return Branches(
        nn.MaxPool2d(3, 2, 1),
        nn.Sequential(conv(c, 6 * u), conv(6 * u, 6 * u, 3, 2)),
        nn.Sequential(conv(c, 8 * u), conv(8 * u, 8 * u, (1, 7)), conv(8 * u, 10 * u, (7, 1)),
                      conv(10 * u, 10 * u, 3, 2)),
    )


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
            self.aux = (AuxHead(self.aux.conv[0].in_channels, num_classes, self.aux_drop_rate)
                        if num_classes else None)


@register("inception", family="inception", min_size=16, default_size=224, lr_mult=1.0,
          scheduler="onecycle")
def inception(num_classes: int, in_chans: int = 3, drop_rate: float = 0.0, **kw) -> Inception:
    """Default: width 8 (¼ of Inception-v4: 96/256/384 channels), paper depths (4, 7, 3), aux.

    Options: ``width`` (channel unit), ``depths`` (A, B, C block counts), ``aux_head``,
    ``drop_path_rate``.
    """
    return Inception(num_classes, in_chans, drop_rate=drop_rate, **kw)
