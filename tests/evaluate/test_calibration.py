"""Calibration metrics and temperature scaling on hand-computed tiny arrays."""

import math

import numpy as np
import pytest

from medclass.errors import MedclassError
from medclass.evaluate.calibration import (
    T_MAX,
    T_MIN,
    apply_temperature,
    brier_score,
    calibration_bins,
    calibration_report,
    ece,
    fit_temperature,
    mce,
    nll,
    nll_from_logits,
    softmax,
)


def _binary(conf: list[float]) -> np.ndarray:
    """Rows [c, 1 - c]: class 0 predicted with confidence c (c >= 0.5)."""
    c = np.asarray(conf, dtype=np.float64)
    return np.stack([c, 1 - c], axis=1)


def test_perfectly_calibrated_bins_give_zero_ece_and_mce():
    # 4 samples at confidence 0.75 with 3 correct (acc 3/4 = 0.75),
    # 2 samples at confidence 0.5 with 1 correct (acc 1/2 = 0.5): every bin has acc == conf.
    probs = _binary([0.75] * 4 + [0.5] * 2)
    labels = np.array([0, 0, 0, 1, 0, 1])
    assert ece(probs, labels, n_bins=4) == 0.0
    assert mce(probs, labels, n_bins=4) == 0.0


def test_bin_edges_are_right_closed():
    # n_bins=4 -> edges 0, .25, .5, .75, 1 (exact in binary). 0.75 belongs to (0.5, 0.75],
    # 0.5 to (0.25, 0.5], 1.0 to (0.75, 1].
    probs = _binary([0.75, 0.75, 0.5, 1.0])
    labels = np.array([0, 1, 0, 0])
    rows = calibration_bins(probs, labels, n_bins=4)
    assert [(r["lower"], r["upper"]) for r in rows] == [
        (0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)
    ]
    assert [r["count"] for r in rows] == [0, 1, 2, 1]
    assert rows[0]["confidence"] is None and rows[0]["accuracy"] is None
    assert rows[1] == {"lower": 0.25, "upper": 0.5, "count": 1, "confidence": 0.5, "accuracy": 1.0}
    assert rows[2]["confidence"] == 0.75 and rows[2]["accuracy"] == 0.5
    assert rows[3]["confidence"] == 1.0 and rows[3]["accuracy"] == 1.0


def test_badly_calibrated_known_ece_and_mce():
    # bin (0.8, 0.9]: 5 samples at conf 0.85, 1 correct -> acc 0.2, gap 0.65
    # bin (0.6, 0.7]: 5 samples at conf 0.65, 4 correct -> acc 0.8, gap 0.15
    # ECE = 5/10 * 0.65 + 5/10 * 0.15 = 0.4 ; MCE = 0.65
    probs = np.array([[0.85, 0.10, 0.05]] * 5 + [[0.65, 0.20, 0.15]] * 5)
    labels = np.array([0, 1, 2, 1, 2, 0, 0, 0, 0, 1])
    assert ece(probs, labels, n_bins=10) == pytest.approx(0.4, abs=1e-12)
    assert mce(probs, labels, n_bins=10) == pytest.approx(0.65, abs=1e-12)
    # a single bin merges them: conf 0.75, acc 0.5 -> ECE = MCE = 0.25
    assert ece(probs, labels, n_bins=1) == pytest.approx(0.25, abs=1e-12)
    assert mce(probs, labels, n_bins=1) == pytest.approx(0.25, abs=1e-12)


def test_brier_and_nll_three_class_two_samples():
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]])
    labels = np.array([0, 2])
    # sample 1: 0.3^2 + 0.2^2 + 0.1^2 = 0.14 ; sample 2: 0.5^2 + 0.3^2 + 0.8^2 = 0.98
    # Brier = (0.14 + 0.98) / 2 = 0.56
    assert brier_score(probs, labels) == pytest.approx(0.56, abs=1e-12)
    # NLL = -(ln 0.7 + ln 0.2) / 2 = (0.3566749 + 1.6094379) / 2
    expected = -(math.log(0.7) + math.log(0.2)) / 2
    assert nll(probs, labels) == pytest.approx(expected, abs=1e-12)
    # logits = ln p + any per-row constant give the same NLL
    logits = np.log(probs) + np.array([[3.0], [-7.0]])
    assert nll_from_logits(logits, labels) == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(softmax(logits), probs, atol=1e-12)


def test_binary_brier_sums_over_both_columns():
    # [0.8, 0.2] label 1: 0.8^2 + 0.8^2 = 1.28 ; [0.6, 0.4] label 0: 0.4^2 + 0.4^2 = 0.32
    # mean = 0.8 (twice the positive-class-only Brier of 0.4)
    assert brier_score(_binary([0.8, 0.6]), np.array([1, 0])) == pytest.approx(0.8, abs=1e-12)


def test_nll_from_logits_is_stable_for_huge_logits():
    # margin 1000 on the wrong class: NLL = ln(1 + e^1000) ~= 1000 (probs would underflow)
    logits = np.array([[1000.0, 0.0]])
    assert nll_from_logits(logits, np.array([1])) == pytest.approx(1000.0, rel=1e-12)


def _margin_logits(margin: float, n_right: int, n_wrong: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary logits (margin, 0): class 0 predicted; the first n_right samples are class 0."""
    logits = np.tile([margin, 0.0], (n_right + n_wrong, 1))
    labels = np.array([0] * n_right + [1] * n_wrong)
    return logits, labels


# For binary logits with margin m and accuracy a, the NLL a*ln(1+e^{-s}) + (1-a)*ln(1+e^{s})
# over the scaled margin s = m / T is minimised where sigmoid(s) = a, i.e. s = ln(a / (1 - a)).
# With a = 3/4: s* = ln 3, so T* = m / ln 3.


def test_overconfident_logits_get_temperature_above_one_and_lower_nll():
    logits, labels = _margin_logits(10.0, n_right=6, n_wrong=2)  # accuracy 3/4, margin 10
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(10.0 / math.log(3), rel=1e-5)  # 9.1024...
    assert t > 1
    before = nll_from_logits(logits, labels)
    after = nll_from_logits(apply_temperature(logits, t), labels)
    # optimum NLL = -(3/4 ln 3/4 + 1/4 ln 1/4) = 0.5623...
    assert after == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), abs=1e-9)
    assert after < before


def test_underconfident_logits_get_temperature_below_one():
    logits, labels = _margin_logits(0.5, n_right=3, n_wrong=1)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(0.5 / math.log(3), rel=1e-5)  # 0.4551...
    assert nll_from_logits(logits, labels, temperature=t) < nll_from_logits(logits, labels)


def test_fit_temperature_is_deterministic_and_bounded():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 4)) * 3
    labels = rng.integers(0, 4, 50)
    assert fit_temperature(logits, labels) == fit_temperature(logits, labels)
    # all correct: NLL falls as T -> 0; the fit sharpens (T < 1) but stays within the bounds
    sure, sure_labels = _margin_logits(2.0, n_right=4, n_wrong=0)
    t_sure = fit_temperature(sure, sure_labels)
    assert T_MIN <= t_sure < 1
    assert nll_from_logits(sure, sure_labels, t_sure) < nll_from_logits(sure, sure_labels) / 100
    assert T_MIN < fit_temperature(logits, labels) < T_MAX


def test_calibration_report_improves_test_nll():
    logits_val, labels_val = _margin_logits(8.0, n_right=30, n_wrong=10)
    logits_test, labels_test = _margin_logits(8.0, n_right=15, n_wrong=5)
    report = calibration_report(logits_val, labels_val, logits_test, labels_test, n_bins=5)
    assert report["temperature"] == pytest.approx(8.0 / math.log(3), rel=1e-5)
    assert report["after"]["nll"] < report["before"]["nll"]
    # before: conf sigmoid(8) = 0.99966 in the last bin with acc 0.75 -> ECE = 0.24966
    assert report["before"]["ece"] == pytest.approx(1 / (1 + math.exp(-8)) - 0.75, abs=1e-12)
    # after: conf sigmoid(ln 3) = 0.75 = acc -> ECE ~ 0
    assert report["after"]["ece"] == pytest.approx(0.0, abs=1e-6)
    assert report["after"]["brier"] < report["before"]["brier"]
    rows = report["reliability"]
    assert len(rows) == 10 and {r["when"] for r in rows} == {"before", "after"}
    assert sum(r["count"] for r in rows if r["when"] == "after") == 20


def test_invalid_inputs_raise():
    with pytest.raises(MedclassError):
        nll_from_logits(np.array([[np.nan, 0.0]]), np.array([0]))
    with pytest.raises(MedclassError):
        fit_temperature(np.zeros((2, 2)), np.array([0, 2]))
    with pytest.raises(ValueError):
        apply_temperature(np.zeros((1, 2)), 0.0)
    with pytest.raises(ValueError):
        ece(_binary([0.9]), np.array([0]), n_bins=0)
