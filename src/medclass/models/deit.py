"""DeiT: a plain patch ViT with a class token and a distillation token (Touvron et al. 2021).

Both tokens go through the transformer; each has its own linear classifier. The two classifiers
live in one ``DistilledHead`` module, which is what ``get_classifier()`` returns (so the "head"
parameter group holds both linears) and what ``reset_classifier(n)`` replaces; it exposes
``in_features``/``out_features`` like an ``nn.Linear``. ``forward`` returns the average of the two
heads' logits — in eval mode always, and in train mode too unless ``set_distilled_training(True)``
was called, in which case train-mode ``forward`` returns ``(cls_logits, dist_logits)`` for a
hard-distillation loss against a teacher. ``pre_logits`` is the average of the two tokens.

Any input side works (registered minimum 16 px): inputs with a side below ``patch_size *
min_grid`` (16·7 = 112 px) are bilinearly upsampled to it, so the token grid is at least 7×7;
sides that are not a multiple of the patch are zero-padded up to one. Position embeddings
(learned for a ``ref_grid``² grid) are bicubically resized to the actual grid.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from torch import nn

from medclass.models.layers import init_weights
from medclass.models.registry import register_model
from medclass.models.tokens import TokenClassifier


class DistilledHead(nn.Module):
    """The class-token classifier ``head`` and the distillation-token classifier ``head_dist``."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        make = (lambda: nn.Linear(in_features, out_features)) if out_features > 0 else nn.Identity
        self.head = make()
        self.head_dist = make()
        self.apply(init_weights)

    def forward(self, x_cls: torch.Tensor, x_dist: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(x_cls), self.head_dist(x_dist)


@register_model(
    "deit",
    "DeiT-Ti distilled: width 192, depth 12, 3 heads, patch 16 (~5.5 M params).",
    family="deit", min_size=16, default_size=224, lr_mult=0.5, scheduler="cosine",
)
class DeiT(TokenClassifier):
    """Patch embedding → [cls; dist; patches] + position embedding → transformer → two heads.

    Options: ``patch_size``, ``min_grid`` and ``TokenClassifier``'s (``width``, ``depth``,
    ``heads``, ``mlp_ratio``, ``ref_grid``, ``drop_rate``, ``drop_path_rate``).
    """

    prefix = ("cls_token", "dist_token")

    def __init__(self, num_classes: int, in_chans: int = 3, patch_size: int = 16,
                 min_grid: int = 7, **kw: Any) -> None:
        self.patch_size, self.min_grid = patch_size, min_grid
        super().__init__(num_classes, in_chans, **kw)
        self.distilled_training = False
        self.fc = DistilledHead(self.num_features, num_classes)

    def make_embed(self, in_chans: int, width: int) -> None:
        """Non-overlapping patch_size² conv."""
        self.patch_embed = nn.Conv2d(in_chans, width, self.patch_size, self.patch_size)

    def set_distilled_training(self, enable: bool = True) -> None:
        """Train-mode ``forward`` returns (cls_logits, dist_logits) instead of their mean."""
        self.distilled_training = enable

    def fit_input(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample so the shorter side is ≥ patch·min_grid, then pad to a patch multiple."""
        h, w = x.shape[-2:]
        side, p = self.patch_size * self.min_grid, self.patch_size
        if min(h, w) < side:
            scale = side / min(h, w)
            h, w = max(side, round(h * scale)), max(side, round(w * scale))
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        return F.pad(x, (0, -w % p, 0, -h % p))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, 2 + h*w, width) after the final norm: [cls, dist, patches...]."""
        x = self.patch_embed(self.fit_input(x))
        pos = resample_abs_pos_embed(self.pos_embed, list(x.shape[-2:]), [self.ref_grid] * 2,
                                     num_prefix_tokens=2)
        return self.encode(x, pos)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False
                     ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Mean of the two heads' logits (or both, see ``set_distilled_training``)."""
        x_cls, x_dist = self.head_drop(x[:, 0]), self.head_drop(x[:, 1])
        if pre_logits:
            return (x_cls + x_dist) / 2
        logits, logits_dist = self.fc(x_cls, x_dist)
        if self.distilled_training and self.training:
            return logits, logits_dist
        return (logits + logits_dist) / 2

    def reset_classifier(self, num_classes: int) -> None:
        """Replace both classifiers (the whole ``DistilledHead``) with fresh ones."""
        self.num_classes = num_classes
        self.fc = DistilledHead(self.num_features, num_classes)
