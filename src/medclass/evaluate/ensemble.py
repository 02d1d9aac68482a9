"""Combining the class probabilities of several models, and how much the members disagree.

All functions take ``probs_list``: a sequence of ``M`` arrays of shape ``(N, K)`` (one per
member, rows are probability vectors) and are pure NumPy.

* ``mean``: the average of the full probability vectors (not only the top class's confidence).
* ``vote``: majority of the members' argmax. A tie between classes with the same number of votes
  goes to the tied class with the highest mean probability (then the lowest class index). The
  result is the vote fraction per class plus ``VOTE_TIE_BREAK`` × the mean probability,
  renormalised, so its argmax is the tie-broken vote, rows sum to 1, and AUC can rank samples
  (vote fractions first, mean probability within equal fractions). It is not calibrated.
* Disagreement per sample: ``variance`` is the across-member variance of the probabilities,
  averaged over classes; ``mutual_information`` (nats) is H(mean p) − mean H(p_m), the
  epistemic part of the ensemble's predictive entropy: 0 when all members give the same
  vector, positive when they differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METHODS: tuple[str, ...] = ("mean", "vote")
VOTE_TIE_BREAK = 1e-3  # < 1 vote: the mean probability only decides between tied vote counts


def _stack(probs_list: Sequence[np.ndarray]) -> np.ndarray:
    """``(M, N, K)`` float64 array; checks that every member has the same shape."""
    if len(probs_list) == 0:
        raise ValueError("an ensemble needs at least one member")
    arrays = [np.asarray(p, dtype=np.float64) for p in probs_list]
    shape = arrays[0].shape
    if len(shape) != 2 or any(a.shape != shape for a in arrays):
        raise ValueError(f"members must all have shape (N, K); got {[a.shape for a in arrays]}")
    return np.stack(arrays)


def vote_counts(probs_list: Sequence[np.ndarray]) -> np.ndarray:
    """``(N, K)`` number of members whose argmax is each class."""
    stacked = _stack(probs_list)
    m, n, k = stacked.shape
    counts = np.zeros((n, k), dtype=np.int64)
    winners = stacked.argmax(axis=2)  # (M, N)
    for member in range(m):
        counts[np.arange(n), winners[member]] += 1
    return counts


def ensemble_probs(probs_list: Sequence[np.ndarray], method: str = "mean") -> np.ndarray:
    """Ensemble ``(N, K)`` probabilities by ``mean`` or ``vote`` (see the module docstring)."""
    stacked = _stack(probs_list)
    mean = stacked.mean(axis=0)
    if method == "mean":
        return mean
    if method == "vote":
        fractions = vote_counts(probs_list) / stacked.shape[0]
        scores = fractions + VOTE_TIE_BREAK * mean
        return scores / scores.sum(axis=1, keepdims=True)
    raise ValueError(f"unknown ensemble method {method!r}; use one of {METHODS}")


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row; 0·log 0 counts as 0."""
    p = np.asarray(probs, dtype=np.float64)
    logp = np.log(np.where(p > 0, p, 1.0))
    return -(p * logp).sum(axis=-1)


def member_variance(probs_list: Sequence[np.ndarray]) -> np.ndarray:
    """``(N,)`` across-member (population) variance of the probabilities, averaged over classes."""
    return _stack(probs_list).var(axis=0).mean(axis=1)


def mutual_information(probs_list: Sequence[np.ndarray]) -> np.ndarray:
    """``(N,)`` H(mean p) − mean H(p_m) in nats; clipped at 0 against float rounding."""
    stacked = _stack(probs_list)
    mi = entropy(stacked.mean(axis=0)) - entropy(stacked).mean(axis=0)
    return np.maximum(mi, 0.0)
