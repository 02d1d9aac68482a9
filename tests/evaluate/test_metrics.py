"""Metrics checked against values worked out by hand on tiny arrays."""

from __future__ import annotations

import itertools
import json
import math
import warnings

import numpy as np
import pytest

from medclass.errors import MedclassError
from medclass.evaluate.metrics import classification_metrics, per_class_roc, summary_metrics

SCALAR_KEYS = {
    "accuracy",
    "balanced_accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "auc",
    "loss",
    "n",
}

# Binary case: labels 4x class 0, 2x class 1; column 1 is the positive-class probability.
Y_BIN = np.array([0, 0, 0, 0, 1, 1])
P1 = np.array([0.1, 0.2, 0.7, 0.3, 0.6, 0.4])
P_BIN = np.stack([1 - P1, P1], axis=1)


def _pairwise_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """AUC as the share of (positive, negative) pairs ranked correctly; ties count half."""
    pos, neg = scores[positive], scores[~positive]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_binary_scalars_by_hand() -> None:
    m = summary_metrics(P_BIN, Y_BIN)
    assert set(m) == SCALAR_KEYS
    # argmax predictions: [0, 0, 1, 0, 1, 0] -> 4 of 6 correct
    assert m["accuracy"] == pytest.approx(4 / 6)
    # recall: class 0 = 3/4, class 1 = 1/2
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 0.5) / 2)
    assert m["recall_macro"] == pytest.approx(0.625)
    # precision: class 0 = 3/4 (idx 0,1,3 of 0,1,3,5), class 1 = 1/2 (idx 4 of 2,4)
    assert m["precision_macro"] == pytest.approx(0.625)
    # f1: class 0 = 0.75, class 1 = 0.5
    assert m["f1_macro"] == pytest.approx(0.625)
    assert m["n"] == 6
    p_true = [0.9, 0.8, 0.3, 0.7, 0.6, 0.4]
    assert m["loss"] == pytest.approx(-sum(math.log(p) for p in p_true) / 6)


def test_binary_auc_uses_positive_column() -> None:
    # positives {0.6, 0.4} vs negatives {0.1, 0.2, 0.7, 0.3}: 6 of 8 pairs ranked right
    auc = summary_metrics(P_BIN, Y_BIN)["auc"]
    assert auc == pytest.approx(0.75)
    # Scoring with the max-probability column instead would give 0.0 here.
    assert _pairwise_auc(P_BIN.max(axis=1), Y_BIN == 1) == pytest.approx(0.0)
    # Column 0 would give 1 - 0.75.
    assert _pairwise_auc(P_BIN[:, 0], Y_BIN == 1) == pytest.approx(0.25)


def test_multiclass_ovr_auc_matches_pairwise_count() -> None:
    rng = np.random.default_rng(3)
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=8)
    labels = np.array([0, 1, 2, 0, 1, 2, 2, 0])
    expected = np.mean([_pairwise_auc(probs[:, k], labels == k) for k in range(3)])
    assert summary_metrics(probs, labels)["auc"] == pytest.approx(expected)


def test_multiclass_auc_with_ties_by_hand() -> None:
    probs = np.array(
        [
            [0.6, 0.2, 0.2],
            [0.2, 0.6, 0.2],
            [0.2, 0.2, 0.6],
            [0.6, 0.2, 0.2],
        ]
    )
    labels = np.array([0, 1, 2, 2])
    # class 0: pos {.6} vs neg {.2,.2,.6} -> (1+1+0.5)/3; class 1: 1.0;
    # class 2: pos {.6,.2} vs neg {.2,.2} -> (1+1+0.5+0.5)/4
    expected = (2.5 / 3 + 1.0 + 3 / 4) / 3
    assert summary_metrics(probs, labels)["auc"] == pytest.approx(expected)


def test_auc_none_when_class_absent_and_no_warnings() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    labels = np.array([0, 1, 1, 0])  # class 2 never occurs (but is predicted once)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(probs, labels, ["a", "b", "c"])
    assert m["auc"] is None
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # balanced accuracy averages present classes only: (1 + 1/2) / 2; recall_macro over all 3
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    assert m["recall_macro"] == pytest.approx(0.5)
    json.dumps(m, allow_nan=False)


def test_binary_auc_none_with_single_class() -> None:
    m = summary_metrics(P_BIN[:4], Y_BIN[:4])
    assert m["auc"] is None
    assert m["accuracy"] == pytest.approx(3 / 4)


def test_confusion_matrix_rows_are_actual() -> None:
    probs = np.array([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 0, 1, 2])  # predictions: 1, 1, 1, 2
    m = classification_metrics(probs, labels, ["x", "y", "z"])
    assert m["confusion_matrix"] == [[0, 2, 0], [0, 1, 0], [0, 0, 1]]
    assert m["per_class"]["y"]["precision"] == pytest.approx(1 / 3)
    assert m["per_class"]["y"]["recall"] == pytest.approx(1.0)
    assert m["per_class"]["y"]["support"] == 1
    assert m["per_class"]["y"]["f1"] == pytest.approx(0.5)


def test_classification_metrics_is_json_and_superset() -> None:
    m = classification_metrics(P_BIN, Y_BIN, ["benign", "malignant"])
    assert set(m) >= SCALAR_KEYS
    assert set(m) - SCALAR_KEYS == {"per_class", "confusion_matrix"}
    assert m["confusion_matrix"] == [[3, 1], [1, 1]]
    text = json.dumps(m, allow_nan=False)
    assert json.loads(text)["per_class"]["malignant"]["support"] == 2
    assert all(type(m[k]) is float for k in SCALAR_KEYS - {"n"})


def test_float32_softmax_input_is_accepted_without_warnings() -> None:
    logits = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.arange(16) % 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = summary_metrics(probs, labels)
    assert m["auc"] is not None and 0.0 <= m["auc"] <= 1.0
    assert m["loss"] > 0


@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        (np.array([[2.0, -1.0], [0.5, 0.5]]), np.array([0, 1]), "softmax"),
        (np.array([[np.nan, 0.5], [0.5, 0.5]]), np.array([0, 1]), "NaN"),
        (np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([0, 2]), r"\[0, 1\]"),
        (np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([0]), "shape"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), "empty"),
    ],
)
def test_bad_inputs_raise_medclass_error(probs: np.ndarray, labels: np.ndarray, match: str) -> None:
    with pytest.raises(MedclassError, match=match):
        summary_metrics(probs, labels)


def test_class_name_count_must_match() -> None:
    with pytest.raises(MedclassError, match="class names"):
        classification_metrics(P_BIN, Y_BIN, ["only-one"])


def test_per_class_roc_binary_curve() -> None:
    roc = per_class_roc(P_BIN, Y_BIN, ["neg", "pos"])
    assert set(roc) == {"neg", "pos"}
    pos = roc["pos"]
    assert set(pos) == {"fpr", "tpr", "threshold"}
    assert len(pos["fpr"]) == len(pos["tpr"]) == len(pos["threshold"])
    assert all(math.isfinite(t) for t in pos["threshold"])
    assert pos["threshold"][0] == 1.0
    assert (pos["fpr"][0], pos["tpr"][0]) == (0.0, 0.0)
    assert (pos["fpr"][-1], pos["tpr"][-1]) == (1.0, 1.0)
    # area under the curve equals the AUC worked out above
    assert np.trapezoid(pos["tpr"], pos["fpr"]) == pytest.approx(0.75)
    json.dumps(roc, allow_nan=False)


def test_per_class_roc_skips_classes_without_positives_or_negatives() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    assert set(per_class_roc(probs, np.array([0, 1, 1, 0]), ["a", "b", "c"])) == {"a", "b"}
    binary = probs[:, :2] / probs[:, :2].sum(axis=1, keepdims=True)
    assert per_class_roc(binary, np.zeros(4, dtype=int), ["a", "b"]) == {}
