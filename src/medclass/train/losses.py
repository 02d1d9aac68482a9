"""Loss construction: cross-entropy or softmax focal loss, label smoothing, class weights.

Targets are class indices, or per-class probabilities (N×K rows summing to 1) when batch mixing
(``train.mixup``) is on; both losses take either. Class weights follow ``nn.CrossEntropyLoss``:
with index targets the mean is over the summed weights of the targets, with probability targets
over the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from medclass.errors import MedclassError


def class_weights(
    labels: np.ndarray, num_classes: int, mode: str | Sequence[float]
) -> torch.Tensor | None:
    """``balanced``: n_samples / (n_classes * count_c) from the training labels; ``none``: None;
    a list: those weights, one per class (a one-line error when the count differs)."""
    if isinstance(mode, str):
        if mode == "none":
            return None
        classes = np.arange(num_classes)
        weights = compute_class_weight("balanced", classes=classes, y=np.asarray(labels))
        return torch.tensor(weights, dtype=torch.float32)
    if len(mode) != num_classes:
        raise MedclassError(
            f"train.class_weights: {len(mode)} weights given for {num_classes} classes; "
            "give one per class in class-index order, or none/balanced"
        )
    return torch.tensor([float(w) for w in mode], dtype=torch.float32)


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al. 2017), multi-class: ``alpha * sum_c w_c t_c (1 - p_c)^gamma
    (-log p_c)`` per sample, ``t`` the (smoothed or mixed) target distribution.

    ``gamma = 0`` (and no ``alpha``) is exactly ``nn.CrossEntropyLoss`` with the same
    ``weight``/``label_smoothing``, reduction included; ``gamma > 0`` down-weights samples the
    model already classifies confidently. ``alpha`` scales the loss (the scalar of the common
    multi-class form; per-class balance is ``weight``).
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | None = None,
        weight: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.gamma, self.alpha, self.label_smoothing = gamma, alpha, label_smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits, dim=1)
        k = logits.shape[1]
        hard = target.ndim == 1
        t = F.one_hot(target, k).to(logp.dtype) if hard else target.to(logp.dtype)
        if self.label_smoothing:
            t = t * (1.0 - self.label_smoothing) + self.label_smoothing / k
        focus = (1.0 - logp.exp()).clamp_(min=0.0).pow(self.gamma) if self.gamma else 1.0
        w = 1.0 if self.weight is None else self.weight.to(logp.dtype)
        per_sample = -(t * w * focus * logp).sum(1)
        if self.alpha is not None:
            per_sample = per_sample * self.alpha
        if hard and self.weight is not None:  # nn.CrossEntropyLoss's weighted mean
            return per_sample.sum() / self.weight.to(logp.dtype)[target].sum()
        return per_sample.mean()


def build_criterion(
    labels: np.ndarray,
    num_classes: int,
    *,
    weights_mode: str | Sequence[float],
    label_smoothing: float,
    loss: str = "ce",
    focal_gamma: float = 2.0,
    focal_alpha: float | None = None,
) -> nn.Module:
    """``ce``: ``nn.CrossEntropyLoss`` (index or probability targets); ``focal``: ``FocalLoss``.

    Label smoothing and class weights combine as in ``nn.CrossEntropyLoss``. With batch mixing
    the smoothing is already in the mixed targets: pass ``label_smoothing=0`` then.
    """
    weight = class_weights(labels, num_classes, weights_mode)
    if loss == "focal":
        return FocalLoss(focal_gamma, focal_alpha, weight, label_smoothing)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)


def aux_loss_weight(model: nn.Module, override: float | None) -> float | None:
    """``train.aux_loss_weight`` (None: the model's own ``aux_loss_weight``); refuses an
    override for a model without an auxiliary head."""
    if override is not None and not hasattr(model, "aux_loss_weight"):
        raise MedclassError(
            f"train.aux_loss_weight: {type(model).__name__} has no auxiliary head "
            "(no aux_loss_weight attribute); set it to null"
        )
    return override
