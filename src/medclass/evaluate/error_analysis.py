"""Where a classifier goes wrong: per-class rows, most confused class pairs, confident mistakes.

Conventions are those of :mod:`medclass.evaluate.metrics`: predictions are ``argmax(probs)``,
confusion matrices have rows = actual class and columns = predicted class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from medclass.errors import MedclassError
from medclass.evaluate.metrics import _validate


def per_class_rows(
    probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> list[dict[str, str | float | int]]:
    """One row per class: ``class``, ``precision``, ``recall``, ``f1``, ``support``.

    Undefined ratios (no sample predicted / present) count as 0, as in scikit-learn's
    ``zero_division=0``.
    """
    p, y = _validate(probs, labels)
    k = p.shape[1]
    if len(class_names) != k:
        raise MedclassError(f"{len(class_names)} class names given but probs have {k} columns")
    prec, rec, f1, support = precision_recall_fscore_support(
        y, p.argmax(axis=1), labels=list(range(k)), average=None, zero_division=0
    )
    return [
        {
            "class": name,
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    ]


def top_confused_pairs(
    confusion: np.ndarray | Sequence[Sequence[int]], classes: Sequence[str], k: int = 5
) -> list[dict[str, str | int | float]]:
    """The ``k`` largest off-diagonal cells: ``actual``, ``predicted``, ``count``, ``rate``.

    ``rate`` is ``count`` over the actual class's total (the share of that class sent to
    ``predicted``). Cells with count 0 are left out; ties keep row-major (actual, predicted)
    order.
    """
    cm = np.asarray(confusion)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(classes):
        raise MedclassError(
            f"confusion matrix of shape {cm.shape} does not match {len(classes)} classes"
        )
    off = cm.astype(np.float64).copy()
    np.fill_diagonal(off, 0)
    flat = off.ravel()
    order = np.argsort(-flat, kind="stable")
    totals = cm.sum(axis=1)
    pairs: list[dict[str, str | int | float]] = []
    for cell in order[: max(k, 0)]:
        if flat[cell] <= 0:
            break
        actual, predicted = divmod(int(cell), cm.shape[1])
        pairs.append({
            "actual": classes[actual],
            "predicted": classes[predicted],
            "count": int(cm[actual, predicted]),
            "rate": float(cm[actual, predicted] / totals[actual]),
        })
    return pairs


def most_confident_mistakes(probs: np.ndarray, labels: np.ndarray, k: int = 10) -> np.ndarray:
    """Indices of up to ``k`` misclassified samples, highest wrong-class confidence first.

    The confidence is the probability of the (wrong) predicted class; ties keep index order.
    """
    p, y = _validate(probs, labels)
    pred = p.argmax(axis=1)
    wrong = np.flatnonzero(pred != y)
    conf = p[wrong, pred[wrong]]
    return wrong[np.argsort(-conf, kind="stable")][: max(k, 0)]
