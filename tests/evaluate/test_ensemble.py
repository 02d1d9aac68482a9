"""Ensemble math on hand-made probabilities: mean vs vote, tie-break, disagreement."""

import numpy as np
import pytest

from medclass.evaluate.ensemble import (
    ensemble_probs,
    entropy,
    member_variance,
    mutual_information,
    vote_counts,
)
from medclass.evaluate.metrics import summary_metrics


def test_mean_and_vote_disagree_on_a_constructed_case():
    # two members lean weakly to class 1, one is very sure of class 0
    members = [np.array([[0.45, 0.55]]), np.array([[0.45, 0.55]]), np.array([[0.99, 0.01]])]
    mean = ensemble_probs(members, "mean")
    vote = ensemble_probs(members, "vote")
    np.testing.assert_allclose(mean, [[0.63, 0.37]])
    assert mean.argmax(1).tolist() == [0]
    assert vote.argmax(1).tolist() == [1]
    np.testing.assert_allclose(vote, [[1 / 3, 2 / 3]], atol=1e-3)  # vote fractions
    np.testing.assert_allclose(vote.sum(1), 1.0)


def test_mean_averages_full_vectors_not_only_top_class():
    members = [np.array([[0.5, 0.3, 0.2]]), np.array([[0.1, 0.2, 0.7]])]
    np.testing.assert_allclose(ensemble_probs(members, "mean"), [[0.3, 0.25, 0.45]])


def test_vote_tie_goes_to_highest_mean_probability():
    # one vote each for class 0 and 1; class 1 has the higher mean probability
    members = [np.array([[0.6, 0.4, 0.0]]), np.array([[0.1, 0.9, 0.0]])]
    assert vote_counts(members).tolist() == [[1, 1, 0]]
    assert ensemble_probs(members, "vote").argmax(1).tolist() == [1]
    # the mean probability never overturns a real majority
    members = [np.array([[0.51, 0.49]])] * 2 + [np.array([[0.0, 1.0]])] * 1
    assert ensemble_probs(members, "vote").argmax(1).tolist() == [0]


def test_vote_probabilities_allow_auc():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    members = [rng.dirichlet(np.ones(3), size=8) for _ in range(5)]
    vote = ensemble_probs(members, "vote")
    np.testing.assert_allclose(vote.sum(1), 1.0)
    assert summary_metrics(vote, labels)["auc"] is not None


def test_disagreement_zero_when_members_agree_positive_when_not():
    same = [np.array([[0.5, 0.5], [0.9, 0.1]])] * 3
    np.testing.assert_allclose(mutual_information(same), [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(member_variance(same), [0.0, 0.0], atol=1e-12)
    split = [np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])]
    np.testing.assert_allclose(mutual_information(split), [np.log(2)])
    np.testing.assert_allclose(member_variance(split), [0.25])
    mild = [np.array([[0.6, 0.4]]), np.array([[0.4, 0.6]])]
    assert 0 < mutual_information(mild)[0] < mutual_information(split)[0]


def test_entropy_handles_zeros():
    np.testing.assert_allclose(entropy(np.array([[1.0, 0.0], [0.5, 0.5]])), [0.0, np.log(2)])


def test_bad_input_raises():
    with pytest.raises(ValueError, match="unknown ensemble method"):
        ensemble_probs([np.ones((1, 2)) / 2], "median")
    with pytest.raises(ValueError, match="same shape|shape"):
        ensemble_probs([np.ones((1, 2)) / 2, np.ones((2, 2)) / 2])
    with pytest.raises(ValueError, match="at least one"):
        ensemble_probs([])
