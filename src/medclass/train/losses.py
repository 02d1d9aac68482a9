"""Loss construction: cross-entropy with label smoothing and optional class weights."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> torch.Tensor | None:
    """``balanced``: n_samples / (n_classes * count_c) from the training labels; ``none``: None."""
    if mode == "none":
        return None
    classes = np.arange(num_classes)
    weights = compute_class_weight("balanced", classes=classes, y=np.asarray(labels))
    return torch.tensor(weights, dtype=torch.float32)


def build_criterion(
    labels: np.ndarray, num_classes: int, *, weights_mode: str, label_smoothing: float
) -> nn.CrossEntropyLoss:
    """Cross-entropy; label smoothing and class weights combine as in ``nn.CrossEntropyLoss``."""
    return nn.CrossEntropyLoss(
        weight=class_weights(labels, num_classes, weights_mode), label_smoothing=label_smoothing
    )
