"""One epoch of training and batched inference; no host sync inside the hot loop."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from medclass.data.dataset import BatchTransform
from medclass.errors import MedclassError
from medclass.train import distributed
from medclass.train.freezing import own_params_frozen


@dataclass
class StepConfig:
    """How optimisation steps are taken."""

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


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast context when an AMP dtype is set, else a no-op."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


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
        if not isinstance(m, _BatchNorm):
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
    rank, world = _shard(loader)
    dev = cfg.device
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen = torch.zeros((), device=dev, dtype=torch.long)
    bad = torch.zeros((), device=dev, dtype=torch.long)  # micro-batches with a non-finite loss
    skipped = 0
    optimizer.zero_grad(set_to_none=True)
    n_batches = len(loader)
    bar = tqdm(loader, desc=desc, leave=False, disable=_quiet(cfg))
    for i, (xb, yb) in enumerate(bar):
        xb = xb.to(dev, non_blocking=True)
        yb = yb.to(dev, non_blocking=True)
        x = transform(xb, train=True, generator=generator, shard=(rank, world))
        target = yb
        if mixer is not None:
            x, target = mixer(x, yb, generator, (rank, world))
            yb = target.argmax(1)
        x = to_memory_format(x, cfg)
        boundary = (i + 1) % cfg.accum_steps == 0 or i + 1 == n_batches
        sync = contextlib.nullcontext() if boundary or world == 1 else model.no_sync()
        with sync:
            with autocast(dev, cfg.amp_dtype):
                logits = model(x)
                loss = criterion(logits.float(), target)
                aux = getattr(core, "aux_logits", None)  # auxiliary head (e.g. inception)
                if aux is not None:
                    w = cfg.aux_loss_weight
                    w = core.aux_loss_weight if w is None else w
                    loss = loss + w * criterion(aux.float(), target)
            scaled = loss / cfg.accum_steps
            (scaler.scale(scaled) if scaler else scaled).backward()
        finite = torch.isfinite(loss.detach())
        if boundary:
            if cfg.nonfinite_skip and not _step_is_finite(optimizer, finite):  # host sync
                skipped += 1
                if skipped > cfg.nonfinite_skip:
                    raise MedclassError(_nonfinite_message(desc, "loss or gradients", cfg))
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()  # the schedule stays aligned with the epoch
            else:
                _step(optimizer, scheduler, cfg, scaler)
                if ema is not None:
                    ema.update(core, step=scheduler.last_epoch)
        n = torch.where(finite, len(yb), 0)
        loss_sum += torch.where(finite, loss.detach() * len(yb), 0.0)
        correct += torch.where(finite, (logits.detach().argmax(1) == yb).sum(), 0)
        seen += n
        bad += (~finite).long()
        if (i + 1) % cfg.log_every == 0 and bar.disable is False:
            bar.set_postfix(loss=f"{float(loss_sum) / max(int(seen), 1):.4f}")  # one sync
    params_ok = torch.stack([p.detach().isfinite().all() for p in core.parameters()]).all()
    totals = torch.stack([loss_sum.double(), correct.double(), seen.double(), bad.double(),
                          (~params_ok).double()])
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


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    loader: DataLoader,
    transform: BatchTransform,
    cfg: StepConfig,
    desc: str = "eval",
    tta: str = "none",
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (float32, N×K) and labels for every sample of the dataset, in dataset order.

    ``tta`` (``flip``/``flip_rot``): the logits are the mean over the test-time views.

    Under DDP the loader holds this rank's interleaved shard (``make_loader(distributed=True)``);
    the shards are gathered so every rank returns the whole, ordered result.
    """
    model.eval()
    outs, labels = [], []
    for xb, yb in tqdm(loader, desc=desc, leave=False, disable=_quiet(cfg)):
        xb = xb.to(cfg.device, non_blocking=True)
        views = transform.views(xb, tta)  # one view (the image) for "none"
        total = None
        for x in views:
            with autocast(cfg.device, cfg.amp_dtype):
                out = model(to_memory_format(x, cfg)).float()
            total = out if total is None else total + out
        outs.append(total / len(views))
        labels.append(yb.to(cfg.device))
    logits, ys = torch.cat(outs), torch.cat(labels)
    if _shard(loader)[1] > 1:
        n = len(loader.dataset)
        logits = distributed.gather_interleaved(logits, n)
        ys = distributed.gather_interleaved(ys, n)
    return logits.cpu().numpy(), ys.cpu().numpy()


def _shard(loader: DataLoader) -> tuple[int, int]:
    """(rank, world size) of a loader over a DistributedSampler shard; (0, 1) otherwise."""
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        return sampler.rank, sampler.num_replicas
    return 0, 1


def to_memory_format(x: torch.Tensor, cfg: StepConfig) -> torch.Tensor:
    """NHWC (``channels_last``) batches when configured: faster convs under bf16/fp16."""
    return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x


def _quiet(cfg: StepConfig) -> bool | None:
    """tqdm ``disable``: True when progress is off; None hides bars on non-TTY (CI) output."""
    return True if not cfg.progress else None
