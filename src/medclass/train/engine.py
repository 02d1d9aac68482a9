"""One epoch of training; no host sync inside the hot loop (inference: ``medclass.inference``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from medclass.data.dataset import BatchTransform
from medclass.errors import MedclassError
from medclass.inference import autocast, loader_shard, quiet, to_memory_format
from medclass.train import distributed
from medclass.train.freezing import own_params_frozen

# Every BatchNorm module that trains (timm's BatchNormAct2d, SplitBatchNorm2d and
# SyncBatchNormAct subclass these); the lazy ones before their first forward.
BATCHNORMS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d,
)


@dataclass
class StepConfig:
    """How optimisation steps are taken (also a ``medclass.inference.RunSettings``)."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    accum_steps: int = 1
    grad_clip: float | None = None
    frozen_backbone: bool = False
    progress: bool = True
    channels_last: bool = False
    log_every: int = 50  # steps between progress-bar loss updates (each is one host sync)
    nonfinite_skip: int = 0  # optimizer steps with NaN/Inf loss or gradients that may be skipped
    aux_loss_weight: float | None = None  # auxiliary-head loss weight; None: the model's own


def place_model(model: nn.Module, cfg: StepConfig) -> nn.Module:
    """Move ``model`` to the step device, in NHWC memory format when ``channels_last`` is on."""
    if cfg.channels_last:
        return model.to(cfg.device, memory_format=torch.channels_last)
    return model.to(cfg.device)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside DistributedDataParallel and/or ``torch.compile`` wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def set_train_mode(model: nn.Module, frozen_backbone: bool) -> None:
    """``model.train()``, but a frozen backbone, and any BatchNorm layer whose own parameters
    are all frozen (``finetune.strategy: gradual/partial``), keeps its statistics fixed."""
    model.train()
    core = unwrap(model)
    head_ids = {id(m) for m in core.get_classifier().modules()} if frozen_backbone else set()
    for m in core.modules():
        if not isinstance(m, BATCHNORMS):
            continue
        if (frozen_backbone and id(m) not in head_ids) or own_params_frozen(m):
            m.eval()


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    transform: BatchTransform,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    cfg: StepConfig,
    *,
    generator: torch.Generator,
    scaler: torch.amp.GradScaler | None = None,
    desc: str = "train",
    ema: nn.Module | None = None,
    mixer: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> dict[str, float]:
    """Train for one pass over ``loader``; returns mean loss and accuracy.

    ``ema`` (timm ``ModelEmaV3``) is updated after every optimizer step. ``mixer``
    (``mixing.BatchMixer``) mixes each augmented batch and returns soft targets; the loss takes
    them and accuracy counts the argmax of the mixed target.

    ``model`` may be wrapped in DistributedDataParallel: each rank then sees its shard of every
    global batch, draws that shard's augmentation from the shared generator, skips the
    gradient all-reduce on accumulation micro-steps, and the epoch's sums are reduced over
    ranks. The loss reaches the host only every ``cfg.log_every`` steps and at the end.

    Non-finite losses or gradients: with ``cfg.nonfinite_skip == 0`` the epoch raises a
    ``MedclassError`` at its end (before the caller writes any checkpoint); with a budget of N,
    each step is checked (one host sync per step), up to N bad steps are skipped without an
    update (``skipped`` in the result) and the next one raises at once.
    """
    set_train_mode(model, cfg.frozen_backbone)
    core = unwrap(model)
    shard = loader_shard(loader)
    sums = _EpochSums.zeros(cfg.device)
    skipped = 0
    optimizer.zero_grad(set_to_none=True)
    n_batches = len(loader)
    bar = tqdm(loader, desc=desc, leave=False, disable=quiet(cfg))
    for i, (xb, yb) in enumerate(bar):
        x, target, yb = _prepare_batch(xb, yb, transform, mixer, generator, shard, cfg)
        boundary = (i + 1) % cfg.accum_steps == 0 or i + 1 == n_batches
        logits, loss = _forward_backward(model, core, x, target, criterion, cfg, scaler,
                                         sync_grads=boundary or shard[1] == 1)
        finite = torch.isfinite(loss.detach())
        if boundary:
            skipped = _optimizer_boundary(optimizer, scheduler, cfg, scaler, finite,
                                          core=core, ema=ema, skipped=skipped, desc=desc)
        sums.add(loss, logits, yb, finite)
        if (i + 1) % cfg.log_every == 0 and bar.disable is False:
            bar.set_postfix(loss=f"{float(sums.loss) / max(int(sums.seen), 1):.4f}")  # one sync
    return _epoch_totals(sums, core, shard[1], cfg, desc=desc, skipped=skipped)


@dataclass
class _EpochSums:
    """Device-side running sums of one epoch (no host sync to update them)."""

    loss: torch.Tensor
    correct: torch.Tensor
    seen: torch.Tensor
    bad: torch.Tensor  # micro-batches with a non-finite loss

    @classmethod
    def zeros(cls, dev: torch.device) -> _EpochSums:
        return cls(torch.zeros((), device=dev),
                   torch.zeros((), device=dev, dtype=torch.long),
                   torch.zeros((), device=dev, dtype=torch.long),
                   torch.zeros((), device=dev, dtype=torch.long))

    def add(self, loss: torch.Tensor, logits: torch.Tensor, yb: torch.Tensor,
            finite: torch.Tensor) -> None:
        """Count one micro-batch, unless its loss is non-finite (then only ``bad``)."""
        n = torch.where(finite, len(yb), 0)
        self.loss += torch.where(finite, loss.detach() * len(yb), 0.0)
        self.correct += torch.where(finite, (logits.detach().argmax(1) == yb).sum(), 0)
        self.seen += n
        self.bad += (~finite).long()


def _prepare_batch(
    xb: torch.Tensor,
    yb: torch.Tensor,
    transform: BatchTransform,
    mixer: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None,
    generator: torch.Generator,
    shard: tuple[int, int],
    cfg: StepConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move, augment (this rank's shard) and optionally mix one batch.

    Returns ``(x, target, labels)``: the loss takes ``target`` (soft when mixed); accuracy
    counts ``labels`` (the mixed target's argmax when mixed)."""
    xb = xb.to(cfg.device, non_blocking=True)
    yb = yb.to(cfg.device, non_blocking=True)
    x = transform(xb, train=True, generator=generator, shard=shard)
    target = yb
    if mixer is not None:
        x, target = mixer(x, yb, generator, shard)
        yb = target.argmax(1)
    return to_memory_format(x, cfg), target, yb


def _forward_backward(
    model: nn.Module,
    core: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    criterion: nn.Module,
    cfg: StepConfig,
    scaler: torch.amp.GradScaler | None,
    *,
    sync_grads: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward of one micro-batch; returns ``(logits, unscaled loss)``.

    Without ``sync_grads`` (a DDP accumulation micro-step) the gradient all-reduce is skipped
    (``model.no_sync()``). An auxiliary head's logits (``core.aux_logits``, e.g. inception)
    add their weighted loss."""
    sync = contextlib.nullcontext() if sync_grads else model.no_sync()
    with sync:
        with autocast(cfg.device, cfg.amp_dtype):
            logits = model(x)
            loss = criterion(logits.float(), target)
            aux = getattr(core, "aux_logits", None)  # auxiliary head (e.g. inception)
            if aux is not None:
                w = cfg.aux_loss_weight
                w = core.aux_loss_weight if w is None else w
                loss = loss + w * criterion(aux.float(), target)
        scaled = loss / cfg.accum_steps
        (scaler.scale(scaled) if scaler else scaled).backward()
    return logits, loss


def _optimizer_boundary(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    cfg: StepConfig,
    scaler: torch.amp.GradScaler | None,
    loss_finite: torch.Tensor,
    *,
    core: nn.Module,
    ema: nn.Module | None,
    skipped: int,
    desc: str,
) -> int:
    """At an accumulation boundary: step (then update ``ema``), or, with a
    ``cfg.nonfinite_skip`` budget and a non-finite loss/gradient (one host sync), skip the
    update (the schedule still steps). Returns the new skip count; raises past the budget."""
    if cfg.nonfinite_skip and not _step_is_finite(optimizer, loss_finite):  # host sync
        skipped += 1
        if skipped > cfg.nonfinite_skip:
            raise MedclassError(_nonfinite_message(desc, "loss or gradients", cfg))
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()  # the schedule stays aligned with the epoch
        return skipped
    _step(optimizer, scheduler, cfg, scaler)
    if ema is not None:
        ema.update(core, step=scheduler.last_epoch)
    return skipped


def _epoch_totals(sums: _EpochSums, core: nn.Module, world: int, cfg: StepConfig, *,
                  desc: str, skipped: int) -> dict[str, float]:
    """Reduce the epoch's sums over ranks (one host sync) and check for non-finite values:
    any bad micro-batch without a skip budget, or non-finite weights, raises."""
    params_ok = torch.stack([p.detach().isfinite().all() for p in core.parameters()]).all()
    totals = torch.stack([sums.loss.double(), sums.correct.double(), sums.seen.double(),
                          sums.bad.double(), (~params_ok).double()])
    if world > 1:
        distributed.all_reduce_sum(totals)
    loss_total, n_correct, n_seen, n_bad, weights_bad = totals.tolist()
    if n_bad and not cfg.nonfinite_skip:
        raise MedclassError(_nonfinite_message(desc, "loss", cfg))
    if weights_bad:
        raise MedclassError(_nonfinite_message(desc, "model weights", cfg))
    return {"loss": loss_total / max(n_seen, 1), "acc": n_correct / max(n_seen, 1),
            "skipped": skipped}


def _step_is_finite(optimizer: torch.optim.Optimizer, loss_finite: torch.Tensor) -> bool:
    """Whether the loss and every gradient about to be applied are finite (one host sync)."""
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    flags = [loss_finite] + [g.isfinite().all() for g in grads]
    return bool(torch.stack(flags).all())


def _nonfinite_message(desc: str, what: str, cfg: StepConfig) -> str:
    budget = (f"after skipping {cfg.nonfinite_skip} bad step(s) (train.nonfinite_skip)"
              if cfg.nonfinite_skip else "(train.nonfinite_skip: 0)")
    return (f"{desc}: non-finite (NaN/Inf) {what} {budget}; lower the learning rate or set "
            "train.grad_clip; the best checkpoint was not overwritten")


def _step(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    cfg: StepConfig,
    scaler: torch.amp.GradScaler | None,
) -> None:
    """Unscale, clip, step the optimizer (through the scaler for fp16) and the LR schedule."""
    if scaler:
        scaler.unscale_(optimizer)
    if cfg.grad_clip:
        nn.utils.clip_grad_norm_(
            [p for g in optimizer.param_groups for p in g["params"]], cfg.grad_clip
        )
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
