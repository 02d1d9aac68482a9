"""Calibration of class probabilities: reliability bins, ECE/MCE, Brier, NLL, temperature scaling.

Conventions:

* ``probs`` is ``(N, K)`` probabilities, ``logits`` is ``(N, K)`` unnormalised scores,
  ``labels`` is ``(N,)`` integer class indices. The confidence of a sample is its top-1
  probability ``max_k p_k``; it is *correct* when ``argmax_k p_k`` equals its label.
* Reliability bins are ``n_bins`` equal-width intervals of the confidence, right-closed
  ``(lo, hi]``; the first bin also holds a confidence of exactly 0, so ``[0, 1/n_bins]``.
* ``ece`` = Σ_b (n_b / N) · |accuracy_b − confidence_b| over the bins; ``mce`` is the largest
  |accuracy_b − confidence_b| over the non-empty bins.
* ``brier_score`` is the multi-class Brier score: the mean over samples of Σ_k (p_k − y_k)²
  with y one-hot, so it lies in [0, 2] and, for K = 2, is twice the binary "positive-class"
  Brier score.
* ``nll`` takes probabilities (clipped by scikit-learn); ``nll_from_logits`` is computed with a
  log-softmax and is the numerically better choice when logits are available.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import brier_score_loss, log_loss

from medclass.errors import MedclassError
from medclass.evaluate.metrics import _validate

T_MIN, T_MAX = 1e-2, 1e2  # fitted temperatures are confined to this range


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = torch.as_tensor(_check_logits(logits), dtype=torch.float64)
    return torch.softmax(z, dim=1).numpy()


def _check_logits(logits: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2 or z.shape[0] == 0:
        raise MedclassError(f"logits must have shape (N>0, K>=2), got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise MedclassError("logits contain NaN/inf (training diverged); lower the learning rate")
    if labels is not None:
        _validate(np.full(z.shape, 1.0 / z.shape[1]), labels)  # label shape/range checks
    return z


def _bin_stats(
    probs: np.ndarray, labels: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edges ``(n_bins + 1,)``, counts, summed confidence and summed correctness per bin."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    p, y = _validate(probs, labels)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # side="left": edges[i-1] < conf <= edges[i] -> bin i-1; conf == 0 lands in bin 0
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    correct_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    return edges, counts, conf_sum, correct_sum


def calibration_bins(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15
) -> list[dict[str, float | int | None]]:
    """One row per bin: ``lower``, ``upper``, ``count``, ``confidence``, ``accuracy``.

    ``confidence``/``accuracy`` are the bin's mean top-1 confidence and accuracy, ``None`` for
    an empty bin (so rows can be written to CSV/JSON as they are).
    """
    edges, counts, conf_sum, correct_sum = _bin_stats(probs, labels, n_bins)
    rows: list[dict[str, float | int | None]] = []
    for b in range(n_bins):
        n = int(counts[b])
        rows.append({
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "count": n,
            "confidence": float(conf_sum[b] / n) if n else None,
            "accuracy": float(correct_sum[b] / n) if n else None,
        })
    return rows


def _gaps(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """|accuracy − confidence| and the count of each non-empty bin."""
    _, counts, conf_sum, correct_sum = _bin_stats(probs, labels, n_bins)
    keep = counts > 0
    gaps = np.abs(correct_sum[keep] - conf_sum[keep]) / counts[keep]
    return gaps, counts[keep]


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence (see the module docstring)."""
    gaps, counts = _gaps(probs, labels, n_bins)
    return float((gaps * counts).sum() / counts.sum())


def mce(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Maximum calibration error: the largest gap over the non-empty bins."""
    gaps, _ = _gaps(probs, labels, n_bins)
    return float(gaps.max())


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over samples of Σ_k (p_k − y_k)², y one-hot; in [0, 2]."""
    p, y = _validate(probs, labels)
    classes = list(range(p.shape[1]))
    return float(brier_score_loss(y, p, labels=classes, scale_by_half=False))


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood (nats) of the true class; probabilities are clipped."""
    p, y = _validate(probs, labels)
    return float(log_loss(y, p, labels=list(range(p.shape[1]))))


def nll_from_logits(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean NLL (nats) of ``softmax(logits / temperature)``, via a stable log-softmax."""
    z = torch.as_tensor(_check_logits(logits, labels))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return float(F.cross_entropy(z / temperature, y))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 50) -> float:
    """Temperature T > 0 minimising the NLL of ``softmax(logits / T)`` on ``labels``.

    Optimises log T (starting at T = 1) with L-BFGS and a strong-Wolfe line search in float64 on
    the CPU, so the result is deterministic. T is confined to [``T_MIN``, ``T_MAX``]. When every
    sample is already correct the NLL keeps falling as T → 0; the search then stops where the
    gradient becomes negligible (some T < 1) or at ``T_MIN``.
    T > 1 softens overconfident logits, T < 1 sharpens underconfident ones.
    """
    z = torch.as_tensor(_check_logits(logits, labels))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.clamp(lo, hi).exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    t = math.exp(min(max(float(log_t.detach()), lo), hi))
    if not math.isfinite(t):
        raise MedclassError("temperature scaling diverged; check the validation logits")
    return t


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``logits / temperature`` (float64); softmax them for calibrated probabilities."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return _check_logits(logits) / temperature


def calibration_scores(logits: np.ndarray, labels: np.ndarray, n_bins: int = 15
                       ) -> dict[str, float]:
    """``{"ece", "mce", "brier", "nll"}`` of ``softmax(logits)``."""
    return _scores(logits, labels, n_bins)


def _scores(logits: np.ndarray, labels: np.ndarray, n_bins: int) -> dict[str, float]:
    probs = softmax(logits)
    return {
        "ece": ece(probs, labels, n_bins),
        "mce": mce(probs, labels, n_bins),
        "brier": brier_score(probs, labels),
        "nll": nll_from_logits(logits, labels),
    }


def calibration_report(
    logits_val: np.ndarray,
    labels_val: np.ndarray,
    logits_test: np.ndarray,
    labels_test: np.ndarray,
    n_bins: int = 15,
) -> dict[str, Any]:
    """Fit T on the validation split; score the test split before and after scaling.

    Returns ``{"temperature", "n_bins", "before": {ece, mce, brier, nll}, "after": {...},
    "reliability": rows}`` where ``rows`` are :func:`calibration_bins` rows of the test split
    with a ``when`` column (``"before"``/``"after"``), ready for a CSV.
    """
    t = fit_temperature(logits_val, labels_val)
    scaled = apply_temperature(logits_test, t)
    rows = [
        {"when": when, **row}
        for when, z in (("before", logits_test), ("after", scaled))
        for row in calibration_bins(softmax(z), labels_test, n_bins)
    ]
    return {
        "temperature": t,
        "n_bins": n_bins,
        "before": _scores(logits_test, labels_test, n_bins),
        "after": _scores(scaled, labels_test, n_bins),
        "reliability": rows,
    }
