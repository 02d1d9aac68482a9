"""Scores of an external test set (``evaluate.external``) from its logits, for
``metrics/test.json`` ``external.<name>``.

The headline metrics (accuracy, macro F1, AUC, …; :func:`classification_metrics`) come from the
uncalibrated softmax, exactly like the internal test split's, so the two compare like with like
(the validation-fitted temperature never changes a prediction). The temperature is applied for
the ``calibration`` block: ECE/MCE/Brier/NLL before (T = 1) and after (T). Bootstrap CIs are
stratified percentile intervals, as for the test split. ``vs_test`` holds external minus
internal for accuracy, macro F1 and AUC: the domain-shift gap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medclass.evaluate.bootstrap import ci_section
from medclass.evaluate.calibration import apply_temperature, calibration_scores, softmax
from medclass.evaluate.metrics import classification_metrics

COMPARED = ("accuracy", "f1_macro", "auc")
"""Metrics whose external − internal difference is reported."""


def score_external(
    logits: np.ndarray, labels: np.ndarray, classes: Sequence[str], temperature: float, *,
    n_bins: int, resamples: int, level: float, seed: int,
) -> dict[str, Any]:
    """Metrics, calibration (at ``temperature``) and CIs of one set (module docstring)."""
    probs = softmax(logits)
    metrics = classification_metrics(probs, labels, list(classes))
    metrics["calibration"] = {
        "temperature": float(temperature), "n_bins": n_bins,
        "before": calibration_scores(logits, labels, n_bins),
        "after": calibration_scores(apply_temperature(logits, temperature), labels, n_bins),
    }
    cis = ci_section(probs, labels, resamples, level, seed)
    if cis:
        metrics["ci"] = cis
    return metrics


def difference(external: Mapping[str, Any], test: Mapping[str, Any]) -> dict[str, float | None]:
    """External minus internal test for :data:`COMPARED` (None where either is undefined)."""
    out: dict[str, float | None] = {}
    for key in COMPARED:
        a, b = external.get(key), test.get(key)
        out[key] = None if a is None or b is None else float(a) - float(b)
    return out
