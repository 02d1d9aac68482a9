"""Classification metrics and one-vs-rest ROC curves, computed with scikit-learn.

Conventions a caller must know:

* ``probs`` is ``(N, K)`` class probabilities (rows should sum to 1), ``labels`` is ``(N,)``
  integer class indices in ``[0, K)``. Predictions are ``argmax(probs, axis=1)``.
* ``auc``: for ``K == 2`` the ROC AUC of the positive class (column 1, MedMNIST convention);
  for ``K > 2`` the macro average of one-vs-rest ROC AUCs. It is ``None`` when undefined
  (some class has no sample in ``labels``), never a made-up number.
* ``balanced_accuracy`` averages recall over the classes present in ``labels``;
  ``recall_macro`` averages over all ``K`` classes (absent classes count as 0).
* Non-finite probabilities (a diverged model) raise :class:`MedclassError`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)
from sklearn.preprocessing import label_binarize

from medclass.errors import MedclassError

Scalar = float | int | None
_TOL = 1e-6  # slack for float rounding in softmax outputs


def _validate(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes, ranges and finiteness; return float probs and int labels."""
    p = np.asarray(probs)
    y = np.asarray(labels)
    if p.ndim != 2 or p.shape[1] < 2:
        raise MedclassError(f"probabilities must have shape (N, K>=2), got {p.shape}")
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise MedclassError(f"labels must have shape ({p.shape[0]},) to match probs, got {y.shape}")
    if p.shape[0] == 0:
        raise MedclassError("cannot compute metrics on an empty split; check the data split sizes")
    if not np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float64)
    if not np.all(np.isfinite(p)):
        raise MedclassError(
            "model produced NaN/inf probabilities (training diverged); lower the learning rate"
        )
    if p.min() < -_TOL or p.max() > 1 + _TOL:
        raise MedclassError("expected probabilities in [0, 1]; apply softmax to the logits first")
    p = np.clip(p, 0.0, 1.0)
    if (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)) or y.dtype.kind == "b":
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise MedclassError(f"labels must be integer class indices, got dtype {y.dtype}")
    k = p.shape[1]
    if y.min() < 0 or y.max() >= k:
        raise MedclassError(f"labels must lie in [0, {k - 1}], got range [{y.min()}, {y.max()}]")
    return p, y


def _auc(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """Positive-class AUC (K == 2) or macro one-vs-rest AUC (K > 2); ``None`` if undefined."""
    k = probs.shape[1]
    if np.unique(labels).size < k:
        return None
    try:
        if k == 2:
            return float(roc_auc_score(labels, probs[:, 1]))
        # Multilabel-indicator form == sklearn's macro OvR, without the sum-to-one check.
        onehot = label_binarize(labels, classes=list(range(k)))
        return float(roc_auc_score(onehot, probs, average="macro"))
    except ValueError:
        return None


def summary_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, Scalar]:
    """Flat scalar metrics only (cheap; meant for every validation epoch).

    Keys: ``accuracy``, ``balanced_accuracy``, ``precision_macro``, ``recall_macro``,
    ``f1_macro``, ``auc`` (may be ``None``), ``loss`` (mean NLL of ``probs``), ``n``.
    """
    p, y = _validate(probs, labels)
    k = p.shape[1]
    classes = list(range(k))
    pred = p.argmax(axis=1)
    prec, rec, f1, _ = precision_recall_fscore_support(
        y, pred, labels=classes, average="macro", zero_division=0
    )
    with warnings.catch_warnings():
        # Classes predicted but absent from labels are ignored by design; don't warn each epoch.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        bal = balanced_accuracy_score(y, pred)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(bal),
        "precision_macro": float(prec),
        "recall_macro": float(rec),
        "f1_macro": float(f1),
        "auc": _auc(p, y),
        "loss": float(log_loss(y, p, labels=classes)),
        "n": int(y.shape[0]),
    }


def classification_metrics(
    probs: np.ndarray, labels: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """Scalar metrics plus ``per_class`` and ``confusion_matrix`` (rows = actual, cols = predicted).

    ``per_class`` maps each class name to ``{"precision", "recall", "f1", "support"}``.
    """
    p, y = _validate(probs, labels)
    k = p.shape[1]
    if len(class_names) != k:
        raise MedclassError(
            f"{len(class_names)} class names given but probabilities have {k} columns"
        )
    result: dict[str, Any] = summary_metrics(p, y)
    classes = list(range(k))
    pred = p.argmax(axis=1)
    prec, rec, f1, support = precision_recall_fscore_support(
        y, pred, labels=classes, average=None, zero_division=0
    )
    result["per_class"] = {
        name: {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    result["confusion_matrix"] = confusion_matrix(y, pred, labels=classes).tolist()
    return result


def per_class_roc(
    probs: np.ndarray, labels: np.ndarray, class_names: list[str]
) -> dict[str, dict[str, list[float]]]:
    """One-vs-rest ROC curve per class: ``{name: {"fpr", "tpr", "threshold"}}``.

    Classes without positives or without negatives in ``labels`` have no defined curve and
    are left out of the result. sklearn's infinite first threshold is replaced by 1.0 (or the
    largest score, if higher) so the values stay valid JSON/CSV.
    """
    p, y = _validate(probs, labels)
    if len(class_names) != p.shape[1]:
        raise MedclassError(
            f"{len(class_names)} class names given but probabilities have {p.shape[1]} columns"
        )
    curves: dict[str, dict[str, list[float]]] = {}
    for i, name in enumerate(class_names):
        positive = y == i
        if positive.all() or not positive.any():
            continue
        fpr, tpr, thr = roc_curve(positive, p[:, i])
        thr = np.where(np.isfinite(thr), thr, max(1.0, float(p[:, i].max())))
        curves[name] = {
            "fpr": [float(v) for v in fpr],
            "tpr": [float(v) for v in tpr],
            "threshold": [float(v) for v in thr],
        }
    return curves
