"""train.hooks: an extra that is off is a no-op Hook; Hooks passes train_one_epoch the same
keyword arguments whether extras are on or off."""

import torch
from torch import nn

from medclass.config import TrainParams
from medclass.train.hooks import (
    EmaHook,
    Hook,
    Hooks,
    MixerHook,
    ema_hook,
    freezer_hook,
    mixer_hook,
    swa_hook,
)


def _off() -> Hooks:
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return Hooks(freezer=freezer_hook(model, (), 0, "finetune"),
                 swa=swa_hook(model, None, None, opt, 1), ema=ema_hook(model, None),
                 mixer=mixer_hook(TrainParams().mixup, 2, 0.1))


def test_extras_that_are_off_are_plain_no_op_hooks():
    hooks, model = _off(), nn.Linear(2, 2)
    assert all(type(h) is Hook for h in hooks.all)
    sched = object()
    assert hooks.scheduler(0, sched) is sched
    assert hooks.eval_model(model) is model
    assert hooks.train_kwargs() == {"ema": None, "mixer": None}
    assert hooks.state_dict() == {"ema": None, "swa": None}
    assert hooks.final_weights(model, None, None, None, 1) is None
    assert hooks.summary() == {}
    assert Hook().loss_smoothing(0.1) == 0.1


def test_ema_and_mixer_hooks_feed_the_training_step():
    model = nn.Linear(2, 2)
    ema = ema_hook(model, 0.9)
    assert isinstance(ema, EmaHook) and ema.eval_model(model) is ema.ema.module
    params = TrainParams(mixup={"mixup_alpha": 0.4}).mixup
    mixer = mixer_hook(params, 2, 0.1)
    assert isinstance(mixer, MixerHook) and mixer.loss_smoothing(0.1) == 0.0
    hooks = Hooks(freezer=Hook(), swa=Hook(), ema=ema, mixer=mixer)
    assert hooks.train_kwargs() == {"ema": ema.ema, "mixer": mixer.mixer}
