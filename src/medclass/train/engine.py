"""One epoch of training and batched inference; no host sync inside the hot loop."""

from __future__ import annotations

import contextlib
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
    """``model.train()``, but a frozen backbone keeps its BatchNorm statistics fixed."""
    model.train()
    if frozen_backbone:
        core = unwrap(model)
        head_ids = {id(m) for m in core.get_classifier().modules()}
        for m in core.modules():
            if isinstance(m, _BatchNorm) and id(m) not in head_ids:
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
) -> dict[str, float]:
    """Train for one pass over ``loader``; returns mean loss and accuracy.

    ``model`` may be wrapped in DistributedDataParallel: each rank then sees its shard of every
    global batch, draws that shard's augmentation from the shared generator, skips the
    gradient all-reduce on accumulation micro-steps, and the epoch's sums are reduced over
    ranks. The loss reaches the host only every ``cfg.log_every`` steps and at the end.
    """
    set_train_mode(model, cfg.frozen_backbone)
    core = unwrap(model)
    rank, world = _shard(loader)
    dev = cfg.device
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen = torch.zeros((), device=dev, dtype=torch.long)
    optimizer.zero_grad(set_to_none=True)
    n_batches = len(loader)
    bar = tqdm(loader, desc=desc, leave=False, disable=_quiet(cfg))
    for i, (xb, yb) in enumerate(bar):
        xb = xb.to(dev, non_blocking=True)
        yb = yb.to(dev, non_blocking=True)
        x = transform(xb, train=True, generator=generator, shard=(rank, world))
        x = _memory_format(x, cfg)
        boundary = (i + 1) % cfg.accum_steps == 0 or i + 1 == n_batches
        sync = contextlib.nullcontext() if boundary or world == 1 else model.no_sync()
        with sync:
            with autocast(dev, cfg.amp_dtype):
                logits = model(x)
                loss = criterion(logits.float(), yb)
                aux = getattr(core, "aux_logits", None)  # auxiliary head (e.g. inception)
                if aux is not None:
                    loss = loss + core.aux_loss_weight * criterion(aux.float(), yb)
            scaled = loss / cfg.accum_steps
            (scaler.scale(scaled) if scaler else scaled).backward()
        if boundary:
            _step(optimizer, scheduler, cfg, scaler)
        loss_sum += loss.detach() * len(yb)
        correct += (logits.detach().argmax(1) == yb).sum()
        seen += len(yb)
        if (i + 1) % cfg.log_every == 0 and bar.disable is False:
            bar.set_postfix(loss=f"{float(loss_sum) / max(int(seen), 1):.4f}")  # one sync
    totals = torch.stack([loss_sum.double(), correct.double(), seen.double()])
    if world > 1:
        distributed.all_reduce_sum(totals)
    mean_loss, n_correct, n_seen = totals.tolist()
    if not np.isfinite(mean_loss):
        raise MedclassError(
            f"{desc}: training loss became {mean_loss}; lower the learning rate or enable "
            "train.grad_clip (the best checkpoint was not overwritten)"
        )
    return {"loss": mean_loss / max(n_seen, 1), "acc": n_correct / max(n_seen, 1)}


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
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (float32, N×K) and labels for every sample of the dataset, in dataset order.

    Under DDP the loader holds this rank's interleaved shard (``make_loader(distributed=True)``);
    the shards are gathered so every rank returns the whole, ordered result.
    """
    model.eval()
    outs, labels = [], []
    for xb, yb in tqdm(loader, desc=desc, leave=False, disable=_quiet(cfg)):
        x = _memory_format(transform(xb.to(cfg.device, non_blocking=True), train=False), cfg)
        with autocast(cfg.device, cfg.amp_dtype):
            outs.append(model(x).float())
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


def _memory_format(x: torch.Tensor, cfg: StepConfig) -> torch.Tensor:
    """NHWC (``channels_last``) batches when configured: faster convs under bf16/fp16."""
    return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x


def _quiet(cfg: StepConfig) -> bool | None:
    """tqdm ``disable``: True when progress is off; None hides bars on non-TTY (CI) output."""
    return True if not cfg.progress else None
