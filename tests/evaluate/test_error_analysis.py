"""Error analysis on hand-made predictions with hand-computed rows."""

import numpy as np
import pytest

from medclass.errors import MedclassError
from medclass.evaluate.error_analysis import (
    most_confident_mistakes,
    per_class_rows,
    top_confused_pairs,
)

# predictions (argmax) vs labels:
#   idx  0  1  2  3  4  5  6
#   y    0  0  0  1  1  2  2
#   pred 0  1  2  1  1  1  2
PROBS = np.array([
    [0.8, 0.1, 0.1],
    [0.3, 0.6, 0.1],   # wrong, conf 0.6
    [0.2, 0.1, 0.7],   # wrong, conf 0.7
    [0.1, 0.8, 0.1],
    [0.2, 0.5, 0.3],
    [0.05, 0.9, 0.05],  # wrong, conf 0.9
    [0.1, 0.2, 0.7],
])
LABELS = np.array([0, 0, 0, 1, 1, 2, 2])
CLASSES = ["a", "b", "c"]


def test_per_class_rows_hand_values():
    rows = per_class_rows(PROBS, LABELS, CLASSES)
    # a: predicted once (correct)          -> P 1/1, R 1/3, F1 2*1*(1/3)/(4/3) = 0.5, support 3
    # b: predicted 4x (idx 1,3,4,5), 2 ok  -> P 2/4, R 2/2, F1 2*0.5*1/1.5 = 2/3, support 2
    # c: predicted 2x (idx 2,6), 1 ok      -> P 1/2, R 1/2, F1 0.5, support 2
    expected = [
        ("a", 1.0, 1 / 3, 0.5, 3),
        ("b", 0.5, 1.0, 2 / 3, 2),
        ("c", 0.5, 0.5, 0.5, 2),
    ]
    for row, (name, p, r, f1, n) in zip(rows, expected, strict=True):
        assert row["class"] == name and row["support"] == n
        assert row["precision"] == pytest.approx(p)
        assert row["recall"] == pytest.approx(r)
        assert row["f1"] == pytest.approx(f1)
    with pytest.raises(MedclassError):
        per_class_rows(PROBS, LABELS, ["a", "b"])


def test_per_class_rows_absent_class_is_zero():
    rows = per_class_rows(np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([0, 0]), ["x", "y"])
    assert rows[1] == {"class": "y", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_top_confused_pairs_order_and_rates():
    cm = np.array([
        [5, 3, 0],
        [1, 7, 3],
        [0, 2, 9],
    ])
    pairs = top_confused_pairs(cm, CLASSES, k=3)
    # off-diagonal counts: a->b 3, b->c 3 (tie, row-major order), c->b 2, b->a 1
    assert [(p["actual"], p["predicted"], p["count"]) for p in pairs] == [
        ("a", "b", 3), ("b", "c", 3), ("c", "b", 2)
    ]
    # rates: 3/8, 3/11, 2/11
    assert [p["rate"] for p in pairs] == pytest.approx([3 / 8, 3 / 11, 2 / 11])
    # k larger than the non-zero cells: zeros are left out (4 non-zero off-diagonal cells)
    assert len(top_confused_pairs(cm, CLASSES, k=10)) == 4
    assert top_confused_pairs(np.diag([1, 2, 3]), CLASSES) == []
    with pytest.raises(MedclassError):
        top_confused_pairs(cm, ["a", "b"])


def test_most_confident_mistakes():
    # mistakes: idx 5 (0.9), idx 2 (0.7), idx 1 (0.6)
    assert most_confident_mistakes(PROBS, LABELS, k=10).tolist() == [5, 2, 1]
    assert most_confident_mistakes(PROBS, LABELS, k=2).tolist() == [5, 2]
    assert most_confident_mistakes(PROBS[[0, 3]], LABELS[[0, 3]], k=5).tolist() == []
