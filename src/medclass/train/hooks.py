"""``fit``'s optional extras as small hook objects (in the spirit of Lightning's callbacks).

EMA (``train.ema_decay``), SWA (``Phase.swa_start``), staged layer freezing
(``Phase.unfreeze_epochs``/``freeze_stages``) and batch mixing (``train.mixup``) each sit behind
a ``Hook``; an extra that is off is the plain ``Hook``, whose callbacks do nothing. ``Hooks``
holds the four and calls them in a fixed order, so ``fit`` has no per-extra branches.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from torch import nn

from medclass.train.freezing import LayerFreezer, build_freezer
from medclass.train.mixing import BatchMixer, build_mixer
from medclass.train.swa import WeightAverager, build_averager

if TYPE_CHECKING:
    import torch
    from torch.optim.lr_scheduler import LRScheduler

    from medclass.config import MixupParams
    from medclass.data.dataset import BatchTransform, CachedDataset
    from medclass.train.engine import StepConfig

log = logging.getLogger(__name__)


class Hook:
    """One optional extra of ``fit``; every callback defaults to doing nothing (extra off)."""

    def loss_smoothing(self, smoothing: float) -> float:
        """The label smoothing the loss itself applies."""
        return smoothing

    def epoch_start(self, epoch: int) -> None:
        """Before the training pass of ``epoch`` (0-based)."""

    def scheduler(self, epoch: int, main: LRScheduler) -> LRScheduler:
        """The per-step LR schedule for ``epoch``."""
        return main

    def train_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments of ``engine.train_one_epoch``."""
        return {}

    def epoch_trained(self, epoch: int, model: nn.Module) -> None:
        """After the training pass of ``epoch``, with the plain (unwrapped) model."""

    def eval_model(self, model: nn.Module) -> nn.Module:
        """The weights that are validated and become the best checkpoint."""
        return model

    def final_weights(self, model: nn.Module, train_ds: CachedDataset,
                      transform: BatchTransform, cfg: StepConfig,
                      batch_size: int) -> nn.Module | None:
        """Weights that replace the best epoch's at the end of the phase; None: keep those."""
        return None

    def state_dict(self) -> dict[str, Any] | None:
        """Resume state for the last checkpoint; None: nothing to keep."""
        return None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore what ``state_dict`` returned, on resume."""

    def summary(self) -> dict[str, Any]:
        """Entries for ``fit``'s returned summary."""
        return {}


class EmaHook(Hook):
    """timm ``ModelEmaV3``: updated after every optimizer step; its weights are validated."""

    def __init__(self, ema: nn.Module) -> None:
        self.ema = ema

    def train_kwargs(self) -> dict[str, Any]:
        return {"ema": self.ema}

    def eval_model(self, model: nn.Module) -> nn.Module:
        return self.ema.module

    def state_dict(self) -> dict[str, Any]:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        self.ema.load_state_dict(state)


class SwaHook(Hook):
    """``swa.WeightAverager``: SWA LR schedule, per-epoch averaging, BN update at the end."""

    def __init__(self, averager: WeightAverager) -> None:
        self.averager = averager

    def scheduler(self, epoch: int, main: LRScheduler) -> LRScheduler:
        return self.averager.scheduler(epoch, main)

    def epoch_trained(self, epoch: int, model: nn.Module) -> None:
        self.averager.update(epoch, model)

    def final_weights(self, model: nn.Module, train_ds: CachedDataset,
                      transform: BatchTransform, cfg: StepConfig,
                      batch_size: int) -> nn.Module | None:
        if not self.averager.n_averaged:
            return None
        return self.averager.finish(model, train_ds, transform, cfg, batch_size)

    def state_dict(self) -> dict[str, Any]:
        return self.averager.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        self.averager.load_state_dict(state)

    def summary(self) -> dict[str, Any]:
        return {"swa_epochs": self.averager.n_averaged}


class FreezerHook(Hook):
    """``freezing.LayerFreezer``: the frozen layer groups follow from the epoch (also on resume)."""

    def __init__(self, freezer: LayerFreezer, phase_name: str) -> None:
        self.freezer, self.phase_name = freezer, phase_name

    def epoch_start(self, epoch: int) -> None:
        log.info("%s epoch %d: %d of %d layer groups frozen", self.phase_name, epoch + 1,
                 self.freezer.apply(epoch), len(self.freezer.groups))


class MixerHook(Hook):
    """``mixing.BatchMixer``: mixes each batch; label smoothing goes into its soft targets."""

    def __init__(self, mixer: BatchMixer) -> None:
        self.mixer = mixer

    def loss_smoothing(self, smoothing: float) -> float:
        return 0.0

    def train_kwargs(self) -> dict[str, Any]:
        return {"mixer": self.mixer}


class Hooks:
    """The four extras of one phase, called in a fixed order; each is a ``Hook`` when off."""

    def __init__(self, *, freezer: Hook, swa: Hook, ema: Hook, mixer: Hook) -> None:
        self.freezer, self.swa, self.ema, self.mixer = freezer, swa, ema, mixer
        self.all = (freezer, swa, ema, mixer)

    def epoch_start(self, epoch: int) -> None:
        for hook in self.all:
            hook.epoch_start(epoch)

    def scheduler(self, epoch: int, main: LRScheduler) -> LRScheduler:
        for hook in self.all:
            main = hook.scheduler(epoch, main)
        return main

    def train_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"ema": None, "mixer": None}
        for hook in self.all:
            kwargs.update(hook.train_kwargs())
        return kwargs

    def epoch_trained(self, epoch: int, model: nn.Module) -> None:
        for hook in self.all:
            hook.epoch_trained(epoch, model)

    def eval_model(self, model: nn.Module) -> nn.Module:
        for hook in self.all:
            model = hook.eval_model(model)
        return model

    def final_weights(self, model: nn.Module, train_ds: CachedDataset,
                      transform: BatchTransform, cfg: StepConfig,
                      batch_size: int) -> nn.Module | None:
        """The first hook's replacement of the best weights (the SWA average); None: none."""
        for hook in self.all:
            final = hook.final_weights(model, train_ds, transform, cfg, batch_size)
            if final is not None:
                return final
        return None

    def state_dict(self) -> dict[str, Any]:
        """The ``ema`` and ``swa`` entries of the last checkpoint (None when off)."""
        return {"ema": self.ema.state_dict(), "swa": self.swa.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state["ema"])
        self.swa.load_state_dict(state["swa"])

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for hook in self.all:
            out.update(hook.summary())
        return out


def build_ema(model: nn.Module, decay: float | None) -> nn.Module | None:
    """timm's ``ModelEmaV3`` of ``model`` (``train.ema_decay``; None: off), float32 weights.

    The decay warms up (``1 - (1 + step)^(-3/4)``, capped at ``decay``) so short runs still
    average recent weights rather than the initialisation. With EMA on, validation, early
    stopping and the best checkpoint use the averaged weights.
    """
    if decay is None:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=decay, use_warmup=True, warmup_power=0.75)


def ema_hook(model: nn.Module, decay: float | None) -> Hook:
    """``EmaHook`` for ``train.ema_decay``; a no-op ``Hook`` when it is None."""
    ema = build_ema(model, decay)
    return Hook() if ema is None else EmaHook(ema)


def swa_hook(model: nn.Module, start_epoch: int | None, lr: float | None,
             optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Hook:
    """``SwaHook`` for a phase whose ``swa_start`` is set; a no-op ``Hook`` otherwise."""
    averager = build_averager(model, start_epoch, lr, optimizer, steps_per_epoch)
    return Hook() if averager is None else SwaHook(averager)


def freezer_hook(model: nn.Module, unfreeze_epochs: tuple[int, ...], freeze_stages: int,
                 phase_name: str) -> Hook:
    """``FreezerHook`` with epoch 0's groups frozen already (call it after the optimizer is
    built, which holds every parameter, and before DDP wrapping); a no-op ``Hook`` when off."""
    freezer = build_freezer(model, unfreeze_epochs, freeze_stages)
    if freezer is None:
        return Hook()
    freezer.apply(0)
    return FreezerHook(freezer, phase_name)


def mixer_hook(params: MixupParams, num_classes: int, label_smoothing: float) -> Hook:
    """``MixerHook`` for ``train.mixup``; a no-op ``Hook`` while both alphas are 0."""
    mixer = build_mixer(params, num_classes, label_smoothing)
    return Hook() if mixer is None else MixerHook(mixer)
