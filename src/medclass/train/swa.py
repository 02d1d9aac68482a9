"""Stochastic weight averaging (``train.swa``) of the finetune phase, with torch's swa_utils.

From epoch ``Phase.swa_start`` on, ``AveragedModel`` takes the equal-weight mean of the weights
after each epoch. With ``train.swa.lr`` the LR anneals (cosine, over the first SWA epoch) from
the schedule's value to that constant (``SWALR``; the head gets ``lr``, other parameter groups
keep their ratio to the head's base LR); without it the phase's own schedule continues. At the
end of the phase BatchNorm statistics are recomputed for the averaged weights (``update_bn``)
over the whole training split, normalised but not augmented (every DDP rank sees the same
images, so all ranks agree); BatchNorm layers of frozen layer groups keep their statistics.
The averaged model is then validated and becomes the phase's best checkpoint. SWA turns early
stopping off (``finetune_phase``): the average needs the last epochs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from medclass.data.dataset import BatchTransform, CachedDataset, make_loader
from medclass.train.engine import BATCHNORMS, StepConfig, autocast, to_memory_format
from medclass.train.freezing import own_params_frozen


class WeightAverager:
    """The SWA state of one phase: the averaged copy and the optional SWA LR schedule."""

    def __init__(self, model: nn.Module, start_epoch: int, lr: float | None,
                 optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> None:
        self.averaged = AveragedModel(model)
        self.start, self.lr = start_epoch, lr
        self.optimizer, self.steps = optimizer, steps_per_epoch
        self._sched: SWALR | None = None
        self._sched_state: dict[str, Any] | None = None

    @property
    def n_averaged(self) -> int:
        return int(self.averaged.n_averaged)

    def scheduler(self, epoch: int, main: LRScheduler) -> LRScheduler:
        """The per-step LR schedule for ``epoch``: ``SWALR`` in SWA epochs when ``lr`` is set."""
        if self.lr is None or epoch < self.start:
            return main
        if self._sched is None:
            groups = self.optimizer.param_groups
            head = next((g for g in groups if g.get("name") == "head"), groups[0])["initial_lr"]
            lrs = [self.lr * g["initial_lr"] / head for g in groups]
            self._sched = SWALR(self.optimizer, swa_lr=lrs, anneal_epochs=max(1, self.steps),
                                anneal_strategy="cos")
            if self._sched_state is not None:  # resumed inside the SWA epochs
                self._sched.load_state_dict(self._sched_state)
        return self._sched

    def update(self, epoch: int, model: nn.Module) -> None:
        """Add ``model``'s weights after ``epoch`` to the average (from ``start`` on)."""
        if epoch >= self.start:
            self.averaged.update_parameters(model)

    def finish(self, model: nn.Module, train_ds: CachedDataset, transform: BatchTransform,
               cfg: StepConfig, batch_size: int) -> nn.Module:
        """Recompute the averaged model's BatchNorm statistics; returns the averaged module."""
        avg = self.averaged.module
        live = dict(model.named_modules())
        with torch.no_grad():
            for (_, mine), theirs in zip(avg.named_buffers(), model.buffers(), strict=True):
                mine.copy_(theirs)  # non-BN buffers follow the trained model
            frozen = {name: {k: b.clone() for k, b in live[name].named_buffers()}
                      for name, m in avg.named_modules()
                      if isinstance(m, BATCHNORMS) and own_params_frozen(live[name])}
            loader = make_loader(train_ds, batch_size, shuffle=False)
            with autocast(cfg.device, cfg.amp_dtype):
                update_bn(_batches(loader, transform, cfg), avg)
            mods = dict(avg.named_modules())
            for name, bufs in frozen.items():
                for k, b in mods[name].named_buffers():
                    b.copy_(bufs[k])
        return avg

    def state_dict(self) -> dict[str, Any]:
        sched = self._sched
        return {"model": self.averaged.state_dict(),
                "sched": None if sched is None else sched.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state["model"])
        sched = state["sched"]
        if sched is not None and "step_count" in sched:  # written before SWALR.state_dict()
            sched = {"_step_count": sched["step_count"], "last_epoch": sched["last_epoch"]}
        self._sched_state = sched


def _batches(loader, transform: BatchTransform, cfg: StepConfig) -> Iterator[torch.Tensor]:
    for xb, _ in loader:
        x = transform(xb.to(cfg.device, non_blocking=True), train=False)
        yield to_memory_format(x, cfg)


def build_averager(model: nn.Module, start_epoch: int | None, lr: float | None,
                   optimizer: torch.optim.Optimizer, steps_per_epoch: int
                   ) -> WeightAverager | None:
    """SWA for a phase whose ``swa_start`` is set; None (off) otherwise."""
    if start_epoch is None:
        return None
    return WeightAverager(model, start_epoch, lr, optimizer, steps_per_epoch)
