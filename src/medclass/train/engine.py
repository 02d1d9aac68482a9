"""One epoch of training and batched inference; no host sync inside the hot loop."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader
from tqdm import tqdm

from medclass.data.dataset import BatchTransform
from medclass.errors import MedclassError


@dataclass
class StepConfig:
    """How optimisation steps are taken."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    accum_steps: int = 1
    grad_clip: float | None = None
    frozen_backbone: bool = False
    progress: bool = True


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast context when an AMP dtype is set, else a no-op."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_train_mode(model: nn.Module, frozen_backbone: bool) -> None:
    """``model.train()``, but a frozen backbone keeps its BatchNorm statistics fixed."""
    model.train()
    if frozen_backbone:
        head_ids = {id(m) for m in model.get_classifier().modules()}
        for m in model.modules():
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
    """Train for one pass over ``loader``; returns mean loss and accuracy (one sync at the end)."""
    set_train_mode(model, cfg.frozen_backbone)
    dev = cfg.device
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen = 0
    optimizer.zero_grad(set_to_none=True)
    n_batches = len(loader)
    for i, (xb, yb) in enumerate(tqdm(loader, desc=desc, leave=False, disable=_quiet(cfg))):
        xb = xb.to(dev, non_blocking=True)
        yb = yb.to(dev, non_blocking=True)
        x = transform(xb, train=True, generator=generator)
        with autocast(dev, cfg.amp_dtype):
            logits = model(x)
            loss = criterion(logits.float(), yb)
            aux = getattr(model, "aux_logits", None)  # auxiliary head (e.g. inception), train only
            if aux is not None:
                loss = loss + model.aux_loss_weight * criterion(aux.float(), yb)
        scaled = loss / cfg.accum_steps
        (scaler.scale(scaled) if scaler else scaled).backward()
        if (i + 1) % cfg.accum_steps == 0 or i + 1 == n_batches:
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
        loss_sum += loss.detach() * len(yb)
        correct += (logits.detach().argmax(1) == yb).sum()
        seen += len(yb)
    mean_loss = float(loss_sum) / max(seen, 1)
    if not np.isfinite(mean_loss):
        raise MedclassError(
            f"{desc}: training loss became {mean_loss}; lower the learning rate or enable "
            "train.grad_clip (the best checkpoint was not overwritten)"
        )
    return {"loss": mean_loss, "acc": float(correct) / max(seen, 1)}


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    loader: DataLoader,
    transform: BatchTransform,
    cfg: StepConfig,
    desc: str = "eval",
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (float32, N×K) and labels for every sample of ``loader``, in loader order."""
    model.eval()
    outs, labels = [], []
    for xb, yb in tqdm(loader, desc=desc, leave=False, disable=_quiet(cfg)):
        x = transform(xb.to(cfg.device, non_blocking=True), train=False)
        with autocast(cfg.device, cfg.amp_dtype):
            outs.append(model(x).float())
        labels.append(yb)
    return torch.cat(outs).cpu().numpy(), torch.cat(labels).numpy()


def _quiet(cfg: StepConfig) -> bool | None:
    """tqdm ``disable``: True when progress is off; None hides bars on non-TTY (CI) output."""
    return True if not cfg.progress else None
