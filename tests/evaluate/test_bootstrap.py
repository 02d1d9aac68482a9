"""Bootstrap intervals: stratification, seeding, coverage of the estimate, vectorised metrics."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from medclass.evaluate.bootstrap import (
    DEFAULT_METRICS,
    accuracy,
    auc_macro,
    bootstrap_ci,
    f1_macro,
    resample_indices,
)


def _data(n: int, k: int = 3, seed: int = 0, round_to: int | None = None):
    """Probabilities that are informative but noisy, with labels of every class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if round_to is not None:  # creates ties in the scores
        probs = np.round(probs, round_to)
        probs /= probs.sum(axis=1, keepdims=True)
    return probs, labels


def test_stratified_resamples_keep_class_counts():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    idx = resample_indices(labels, 200, np.random.default_rng(0), stratified=True)
    assert idx.shape == (200, 10)
    for row in idx:
        assert np.bincount(labels[row], minlength=3).tolist() == [3, 2, 5]
    # and the draws really vary (with replacement): not every row is a permutation
    assert any(len(set(row.tolist())) < 10 for row in idx)
    plain = resample_indices(labels, 200, np.random.default_rng(0), stratified=False)
    counts = {tuple(np.bincount(labels[row], minlength=3)) for row in plain}
    assert len(counts) > 1  # unstratified class counts vary


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("round_to", [None, 1])
def test_vectorised_metrics_match_sklearn(k, round_to):
    from medclass.evaluate.bootstrap import _counts

    probs, labels = _data(60, k=k, seed=k, round_to=round_to)
    idx = resample_indices(labels, 15, np.random.default_rng(1), stratified=False)
    counts = _counts(idx, labels.size)
    for metric in (accuracy, f1_macro, auc_macro):
        fast = metric.weighted(probs, labels, counts)
        slow = np.array([np.nan if (v := metric(probs[i], labels[i])) is None else v for i in idx])
        np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_auc_missing_class_in_a_resample_is_nan():
    from medclass.evaluate.bootstrap import _counts

    probs, labels = _data(6, k=3)
    counts = _counts(np.array([[0, 0, 1, 1, 3, 4]]), 6)  # class 2 (samples 2, 5) never drawn
    assert np.isnan(auc_macro.weighted(probs, labels, counts)[0])
    assert auc_macro(probs[[0, 0, 1, 1, 3, 4]], labels[[0, 0, 1, 1, 3, 4]]) is None


def test_hand_computed_degenerate_cases():
    # all predictions correct: every resample has accuracy 1 -> CI [1, 1]
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    ci = bootstrap_ci(probs, labels, {"acc": accuracy}, n_resamples=50)
    assert ci["acc"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    # one sample per class, stratified: every resample is the data itself -> zero width
    ci = bootstrap_ci(np.array([[0.4, 0.6], [0.3, 0.7]]), np.array([0, 1]), n_resamples=20)
    assert ci["accuracy"] == {"value": 0.5, "low": 0.5, "high": 0.5}
    # AUC: column-1 score of the positive (0.7) beats the negative's (0.6) -> 1
    assert ci["auc"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    # f1: class 0 never predicted (F1 0); class 1: 2*1/(1+2) = 2/3 -> macro 1/3
    assert ci["f1_macro"]["value"] == pytest.approx(1 / 3)


def test_ci_contains_estimate_and_is_seeded():
    probs, labels = _data(300)
    a = bootstrap_ci(probs, labels, n_resamples=300, seed=3)
    assert set(a) == set(DEFAULT_METRICS)
    for name, r in a.items():
        assert r["low"] <= r["value"] <= r["high"], name
        assert r["low"] < r["high"], name
    assert a["accuracy"]["value"] == accuracy_score(labels, probs.argmax(1))
    assert bootstrap_ci(probs, labels, n_resamples=300, seed=3) == a
    assert bootstrap_ci(probs, labels, n_resamples=300, seed=4) != a


def test_higher_confidence_gives_wider_interval():
    probs, labels = _data(300)
    ci90 = bootstrap_ci(probs, labels, {"acc": accuracy}, n_resamples=400, confidence=0.90)
    ci99 = bootstrap_ci(probs, labels, {"acc": accuracy}, n_resamples=400, confidence=0.99)
    assert ci99["acc"]["low"] < ci90["acc"]["low"] and ci99["acc"]["high"] > ci90["acc"]["high"]


def test_width_shrinks_with_more_data():
    probs, labels = _data(100)
    big_probs, big_labels = np.tile(probs, (16, 1)), np.tile(labels, 16)  # same estimates, 16x n
    small = bootstrap_ci(probs, labels, n_resamples=400)
    big = bootstrap_ci(big_probs, big_labels, n_resamples=400)
    for name in DEFAULT_METRICS:
        assert big[name]["value"] == pytest.approx(small[name]["value"])
        w_small = small[name]["high"] - small[name]["low"]
        w_big = big[name]["high"] - big[name]["low"]
        assert w_big < 0.5 * w_small, name  # ~1/4 expected (sqrt(16))


def test_plain_functions_follow_the_same_resamples():
    probs, labels = _data(80)

    def plain(p, y):
        return float(accuracy_score(y, p.argmax(1)))

    fast = bootstrap_ci(probs, labels, {"acc": accuracy}, n_resamples=100, seed=5)
    slow = bootstrap_ci(probs, labels, {"acc": plain}, n_resamples=100, seed=5)
    assert fast == slow


def test_undefined_metric_gives_none_bounds_and_bad_args_raise():
    probs, labels = _data(30)
    ci = bootstrap_ci(probs, labels, {"never": lambda p, y: None}, n_resamples=10)
    assert ci["never"] == {"value": None, "low": None, "high": None}
    with pytest.raises(ValueError):
        bootstrap_ci(probs, labels, n_resamples=0)
    with pytest.raises(ValueError):
        bootstrap_ci(probs, labels, confidence=1.0)
