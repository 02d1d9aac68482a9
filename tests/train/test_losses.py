"""Loss knobs: focal loss, explicit class weights, soft targets, aux-head weight, drop_path."""

import numpy as np
import pytest
import torch
from torch import nn

from medclass.config import parse_params
from medclass.data.dataset import BatchTransform, CachedDataset, make_loader
from medclass.errors import MedclassError
from medclass.train.engine import StepConfig, train_one_epoch
from medclass.train.losses import FocalLoss, aux_loss_weight, build_criterion, class_weights

LOGITS = torch.tensor([[4.0, -1.0, 0.0], [0.2, 0.1, 0.0], [-1.0, 3.0, 0.5], [0.0, 0.0, 2.0]])
TARGET = torch.tensor([0, 2, 1, 2])
W = torch.tensor([1.0, 3.0, 0.5])


@pytest.mark.parametrize("weight", [None, W])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_focal_with_gamma_0_is_cross_entropy(weight, smoothing):
    ce = nn.CrossEntropyLoss(weight=weight, label_smoothing=smoothing)
    focal = FocalLoss(gamma=0.0, weight=weight, label_smoothing=smoothing)
    torch.testing.assert_close(focal(LOGITS, TARGET), ce(LOGITS, TARGET))
    soft = torch.softmax(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), 1)
    torch.testing.assert_close(FocalLoss(0.0, weight=weight)(LOGITS, soft),
                               nn.CrossEntropyLoss(weight=weight)(LOGITS, soft))


def test_focal_down_weights_easy_examples():
    easy, hard = torch.tensor([[5.0, 0.0]]), torch.tensor([[0.2, 0.0]])
    y = torch.tensor([0])
    ce, focal = nn.CrossEntropyLoss(), FocalLoss(gamma=2.0)
    assert focal(easy, y) < 0.01 * ce(easy, y)  # confident and right: almost no loss left
    assert focal(hard, y) > 0.2 * ce(hard, y)
    assert focal(hard, y) / ce(hard, y) > 30 * focal(easy, y) / ce(easy, y)
    assert FocalLoss(2.0, alpha=0.25)(hard, y) == pytest.approx(0.25 * float(focal(hard, y)))


def test_build_criterion_picks_the_loss():
    labels = np.array([0, 1, 2, 2])
    crit = build_criterion(labels, 3, weights_mode="none", label_smoothing=0.1, loss="focal",
                           focal_gamma=1.5, focal_alpha=0.5)
    assert isinstance(crit, FocalLoss) and (crit.gamma, crit.alpha) == (1.5, 0.5)
    assert isinstance(build_criterion(labels, 3, weights_mode="none", label_smoothing=0.0),
                      nn.CrossEntropyLoss)


def test_explicit_class_weights_are_applied():
    w = class_weights(np.array([0, 1]), 3, [1.0, 3.0, 0.5])
    assert torch.equal(w, W)
    for loss in ("ce", "focal"):
        crit = build_criterion(np.array([0, 1]), 3, weights_mode=[1.0, 3.0, 0.5],
                               label_smoothing=0.0, loss=loss, focal_gamma=0.0)
        y = torch.tensor([1])  # one sample: the weighted mean is the plain loss
        torch.testing.assert_close(crit(LOGITS[2:3], y),
                                   nn.functional.cross_entropy(LOGITS[2:3], y))
        batch = crit(LOGITS, TARGET)
        assert not torch.isclose(batch, nn.functional.cross_entropy(LOGITS, TARGET))
    with pytest.raises(MedclassError, match=r"train.class_weights: 2 weights given for 3 classes"):
        class_weights(np.array([0, 1]), 3, [1.0, 2.0])


@pytest.mark.parametrize("bad", [[1.0, -1.0], [2.0], "balance", [1.0, "x"]])
def test_bad_class_weights_are_refused_in_one_line(bad):
    with pytest.raises(MedclassError, match="train.class_weights") as err:
        parse_params({"train": {"class_weights": bad}})
    assert "\n" not in str(err.value)


def test_soft_target_cross_entropy_matches_timm():
    from timm.loss import SoftTargetCrossEntropy

    soft = torch.softmax(torch.randn(4, 3, generator=torch.Generator().manual_seed(1)), 1)
    crit = build_criterion(np.array([0, 1, 2]), 3, weights_mode="none", label_smoothing=0.0)
    torch.testing.assert_close(crit(LOGITS, soft), SoftTargetCrossEntropy()(LOGITS, soft))


class AuxNet(nn.Module):
    """No BatchNorm; an auxiliary head whose logits are kept in train mode (like inception)."""

    aux_loss_weight = 0.4

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc, self.aux = nn.Linear(4, 2), nn.Linear(4, 2)
        self.aux_logits = None

    def forward(self, x):
        f = torch.relu(self.conv(x)).mean((2, 3))
        self.aux_logits = self.aux(f) if self.training else None
        return self.fc(f)

    def get_classifier(self):
        return self.fc


def _epoch_loss(cfg: StepConfig) -> float:
    torch.manual_seed(0)
    model = AuxNet()
    ds = CachedDataset(np.random.default_rng(0).integers(0, 255, (16, 1, 8, 8), dtype=np.uint8),
                       np.arange(16) % 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # loss of the same weights every step
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    out = train_one_epoch(model, make_loader(ds, 8, shuffle=False), BatchTransform([0.5], [0.2]),
                          nn.CrossEntropyLoss(), opt, sched, cfg,
                          generator=torch.Generator().manual_seed(0))
    return out["loss"]


def test_aux_loss_weight_overrides_the_models():
    cpu = torch.device("cpu")
    zero, own, two = (_epoch_loss(StepConfig(cpu, progress=False, aux_loss_weight=w))
                      for w in (0.0, None, 2.0))
    assert own == pytest.approx(_epoch_loss(StepConfig(cpu, progress=False, aux_loss_weight=0.4)))
    assert zero < own < two
    aux_part = (own - zero) / 0.4
    assert two == pytest.approx(zero + 2.0 * aux_part, rel=1e-5)
    with pytest.raises(MedclassError, match="train.aux_loss_weight: Linear has no auxiliary head"):
        aux_loss_weight(nn.Linear(2, 2), 0.5)
    assert aux_loss_weight(AuxNet(), None) is None


def test_drop_path_goes_to_the_backbone_or_is_refused():
    from medclass.train.context import build_model

    def build(model, **train):
        return build_model(parse_params({"model": model, "data": {"image_size": 16},
                                         "train": train}), 2, 1)

    rates = [m.drop_prob for m in build("small_resnet", drop_path=0.2).modules()
             if hasattr(m, "drop_prob")]
    assert rates and max(rates) == pytest.approx(0.2)
    assert not any(getattr(m, "drop_prob", 0) for m in build("small_resnet").modules())
    with pytest.raises(MedclassError, match="train.drop_path: simple_cnn has no stochastic depth"):
        build("simple_cnn", drop_path=0.1)
    with pytest.raises(MedclassError, match="train.*drop_path"):
        parse_params({"train": {"drop_path": 0.1, "model_kwargs": {"drop_path_rate": 0.1}}})
