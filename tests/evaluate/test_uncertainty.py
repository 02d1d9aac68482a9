"""MC dropout mechanics and uncertainty scores on hand-computed tiny arrays."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from medclass.evaluate.uncertainty import (
    aurc,
    error_detection_auroc,
    mc_dropout_probs,
    mutual_information,
    predictive_entropy,
    risk_coverage,
)
from medclass.models.layers import DropPath


class _Net(nn.Module):
    """Conv → BatchNorm → residual DropPath → pool → Dropout → Linear."""

    def __init__(self, p: float = 0.5, drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.branch = nn.Conv2d(4, 4, 1)
        self.drop_path = DropPath(drop_path)
        self.drop = nn.Dropout(p)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        x = x + self.drop_path(self.branch(x))
        return self.fc(self.drop(x.mean(dim=(2, 3))))


def _net(**kw) -> _Net:
    torch.manual_seed(0)
    net = _Net(**kw)
    with torch.no_grad():  # non-trivial running stats, so using batch stats would show
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    return net


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(5, 1, 6, 6, generator=g), torch.zeros(5)) for _ in range(2)]


def _bn_state(net: _Net) -> list[torch.Tensor]:
    bn = net.bn
    return [t.clone() for t in (bn.running_mean, bn.running_var, bn.num_batches_tracked)]


def test_mc_dropout_keeps_batchnorm_frozen_and_passes_differ():
    net = _net(p=0.5)
    before = _bn_state(net)
    probs = mc_dropout_probs(net, _batches(), passes=4, device="cpu")
    assert probs.shape == (4, 10, 3)
    np.testing.assert_allclose(probs.sum(axis=2), 1.0, atol=1e-12)
    for old, new in zip(before, _bn_state(net), strict=True):
        assert torch.equal(old, new)
    assert not np.allclose(probs[0], probs[1])


def test_mc_dropout_without_dropout_equals_eval_forward():
    # equal to the eval-mode forward on the whole data: BatchNorm used its running stats
    net = _net(p=0.0)
    probs = mc_dropout_probs(net, _batches(), passes=3, device="cpu")
    np.testing.assert_array_equal(probs[0], probs[1])
    np.testing.assert_array_equal(probs[0], probs[2])
    net.eval()
    with torch.no_grad():
        x = torch.cat([b[0] for b in _batches()])
        expected = torch.softmax(net(x).double(), dim=1).numpy()
    np.testing.assert_allclose(probs[0], expected, atol=1e-6)
    np.testing.assert_allclose(mutual_information(probs), 0.0, atol=1e-12)


def test_mc_dropout_includes_droppath():
    net = _net(p=0.0, drop_path=0.5)
    probs = mc_dropout_probs(net, _batches(), passes=4, device="cpu")
    assert not np.allclose(probs[0], probs[1])


def test_mc_dropout_restores_modes_and_is_seeded():
    net = _net(p=0.5)
    net.eval()
    net.drop.train()  # a mixed state must come back exactly
    modes = {name: m.training for name, m in net.named_modules()}
    rng_before = torch.get_rng_state()
    a = mc_dropout_probs(net, _batches(), passes=3, device="cpu", seed=7)
    b = mc_dropout_probs(net, _batches(), passes=3, device="cpu", seed=7)
    c = mc_dropout_probs(net, _batches(), passes=3, device="cpu", seed=8)
    assert {name: m.training for name, m in net.named_modules()} == modes
    assert torch.equal(torch.get_rng_state(), rng_before)  # caller's RNG untouched
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    net.train()
    mc_dropout_probs(net, [torch.zeros(2, 1, 6, 6)], passes=1, device="cpu")
    assert all(m.training for m in net.modules())


def test_mc_dropout_restores_modes_on_error():
    net = _net(p=0.5)
    net.train()
    with pytest.raises(RuntimeError):
        mc_dropout_probs(net, [torch.zeros(2, 3, 6, 6)], passes=1, device="cpu")  # wrong channels
    assert all(m.training for m in net.modules())


def test_entropy_and_mutual_information_hand_values():
    # [0.5, 0.5] -> ln 2 ; [1, 0] -> 0
    np.testing.assert_allclose(predictive_entropy(np.array([[0.5, 0.5], [1.0, 0.0]])),
                               [math.log(2), 0.0])
    # passes [1, 0] and [0, 1]: mean [.5, .5] has entropy ln 2, each pass 0 -> MI = ln 2
    stack = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    np.testing.assert_allclose(mutual_information(stack), [math.log(2)])
    same = np.repeat(np.array([[[0.2, 0.3, 0.5]]]), 5, axis=0)
    np.testing.assert_allclose(mutual_information(same), [0.0], atol=1e-12)


def test_risk_coverage_hand_values():
    # sorted by confidence: correct, correct, wrong, correct
    # risks: 0/1, 0/2, 1/3, 1/4 ; AURC = (0 + 0 + 1/3 + 1/4) / 4 = 7/48
    conf = np.array([0.6, 0.9, 0.7, 0.8])
    correct = np.array([1, 1, 0, 1])
    coverage, risk = risk_coverage(conf, correct)
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 0.0, 1 / 3, 0.25])
    assert aurc(conf, correct) == pytest.approx(7 / 48)


def test_risk_coverage_ties_are_order_invariant():
    # two tied at 0.9 (one wrong) then one correct at 0.5:
    # points (2/3, 1/2), (1, 1/3) ; AURC = 2/3 * 1/2 + 1/3 * 1/3 = 4/9
    for correct in ([1, 0, 1], [0, 1, 1]):
        coverage, risk = risk_coverage(np.array([0.9, 0.9, 0.5]), np.array(correct))
        np.testing.assert_allclose(coverage, [2 / 3, 1.0])
        np.testing.assert_allclose(risk, [0.5, 1 / 3])
        assert aurc(np.array([0.9, 0.9, 0.5]), np.array(correct)) == pytest.approx(4 / 9)


def test_aurc_of_a_perfect_ranking_is_the_known_minimum():
    # N=4, E=1: risks 0, 0, 0, 1/4 -> 1/16
    assert aurc(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 1, 1, 0])) == pytest.approx(1 / 16)
    # N=5, E=2: risks 0, 0, 0, 1/4, 2/5 -> (0.25 + 0.4) / 5 = 0.13
    perfect = aurc(np.array([5.0, 4, 3, 2, 1]), np.array([1, 1, 1, 0, 0]))
    assert perfect == pytest.approx(0.13)
    # any other ordering is worse: errors first -> risks 1, 1, 2/3, 2/4, 2/5
    worst = aurc(np.array([1.0, 2, 3, 4, 5]), np.array([1, 1, 1, 0, 0]))
    assert worst == pytest.approx((1 + 1 + 2 / 3 + 0.5 + 0.4) / 5)
    assert perfect < worst


def test_error_detection_auroc():
    # errors (positive) have uncertainty 0.8 and 0.3, correct ones 0.1 and 0.5:
    # pairs 0.8>0.1, 0.8>0.5, 0.3>0.1 win, 0.3<0.5 loses -> 3/4
    u = np.array([0.1, 0.8, 0.5, 0.3])
    assert error_detection_auroc(u, np.array([1, 0, 1, 0])) == pytest.approx(0.75)
    assert error_detection_auroc(np.array([0.1, 0.2, 0.9]), np.array([1, 1, 0])) == 1.0
    assert error_detection_auroc(u, np.ones(4)) is None
    assert error_detection_auroc(u, np.zeros(4)) is None
