"""fit(): epochs, validation, early stopping, best/last checkpoints, resume, dvclive logging."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medclass.config import TrainParams
from medclass.data.dataset import BatchTransform, make_loader
from medclass.evaluate.metrics import summary_metrics
from medclass.io import load_checkpoint, save_checkpoint
from medclass.train import distributed
from medclass.train.context import DataBundle, amp_dtype, resolve_device, use_channels_last
from medclass.train.engine import StepConfig, place_model, predict_logits, train_one_epoch
from medclass.train.losses import build_criterion
from medclass.train.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

MONITOR_KEYS = {"val_loss": "loss", "val_acc": "accuracy", "val_auc": "auc", "val_f1": "f1_macro"}


@dataclass(frozen=True)
class Phase:
    """One training phase (head or finetune) and its optimisation settings."""

    name: str
    epochs: int
    head_lr: float
    backbone_lr: float | None  # None: backbone frozen
    weight_decay: float
    scheduler: str = "constant"
    warmup_epochs: int = 0
    min_lr_ratio: float = 0.0
    monitor: str = "val_loss"
    patience: int | None = None  # None: no early stopping
    min_epochs: int = 0
    min_delta: float = 0.0
    layer_decay: float | None = None  # None: one backbone LR; else layer-wise decay factor


@dataclass(frozen=True)
class Outputs:
    """Where a phase writes: best weights, resumable last state, dvclive folder."""

    best: Path
    last: Path
    live_dir: Path


class EarlyStopping:
    """Tracks the monitored value; ``step`` returns True when training should stop."""

    def __init__(self, phase: Phase) -> None:
        self.mode = "min" if phase.monitor == "val_loss" else "max"
        self.patience, self.min_epochs, self.min_delta = (
            phase.patience, phase.min_epochs, phase.min_delta)
        self.best: float | None = None
        self.best_epoch = -1
        self.bad_epochs = 0

    def improved(self, value: float | None) -> bool:
        if value is None:
            return self.best is None
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def step(self, epoch: int, value: float | None) -> tuple[bool, bool]:
        """Record ``value`` for ``epoch``; returns (improved, stop)."""
        better = self.improved(value)
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        stop = (
            self.patience is not None
            and epoch + 1 >= self.min_epochs
            and self.bad_epochs >= self.patience
        )
        return better, stop

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad_epochs = s["best"], s["best_epoch"], s["bad_epochs"]


def _open_live(live_dir: Path, history: list[dict[str, float]]):
    from dvclive import Live

    live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)
    for row in history:  # a resumed run replays finished epochs so curves stay whole
        _log_row(live, row)
    return live


def _log_row(live, row: dict[str, float]) -> None:
    for key, value in row.items():
        if key != "epoch" and value is not None:
            live.log_metric(key.replace("_", "/", 1), value)
    live.next_step()


def fit(
    model: nn.Module,
    phase: Phase,
    data: DataBundle,
    train: TrainParams,
    *,
    seed: int,
    meta: dict[str, Any],
    outputs: Outputs,
    fingerprint: str,
) -> dict[str, Any]:
    """Train ``model`` for ``phase``; writes best and last checkpoints; returns a summary."""
    device = resolve_device(train.device)
    dist_info = distributed.info()
    if device.type == "cuda" and dist_info.enabled:
        device = torch.device("cuda", torch.cuda.current_device())
    frozen = phase.backbone_lr is None
    if frozen:
        head_ids = {id(p) for p in model.get_classifier().parameters()}
        for p in model.parameters():
            p.requires_grad_(id(p) in head_ids)
    dtype = amp_dtype(device, train.precision)
    cfg = StepConfig(device, dtype, train.accum_steps, train.grad_clip, frozen,
                     train.progress and dist_info.is_main,
                     channels_last=use_channels_last(train.channels_last, dtype),
                     log_every=train.log_every, nonfinite_skip=train.nonfinite_skip)
    place_model(model, cfg)
    net = _wrap(model, train, dist_info)
    transform = BatchTransform(data.stats["mean"], data.stats["std"], train.augment)
    train_ds, val_ds = data.splits["train"], data.splits["val"]
    shard = (dist_info.rank, dist_info.world_size) if dist_info.enabled else None
    pin = device.type == "cuda" if train.pin_memory == "auto" else bool(train.pin_memory)
    train_loader = make_loader(train_ds, train.batch_size, shuffle=True, seed=seed,
                               num_workers=train.num_workers, pin_memory=pin, drop_last=True,
                               shard=shard)
    val_loader = make_loader(val_ds, train.eval_batch_size, shuffle=False,
                             num_workers=train.num_workers, pin_memory=pin,
                             shard=shard)
    criterion = build_criterion(train_ds.labels, len(data.classes),
                                weights_mode=train.class_weights,
                                label_smoothing=train.label_smoothing).to(device)
    optimizer = build_optimizer(model, head_lr=phase.head_lr, backbone_lr=phase.backbone_lr,
                                weight_decay=phase.weight_decay, layer_decay=phase.layer_decay)
    steps = -(-len(train_loader) // train.accum_steps)
    scheduler = build_scheduler(optimizer, phase.scheduler, epochs=max(phase.epochs, 1),
                                steps_per_epoch=steps, warmup_epochs=phase.warmup_epochs,
                                min_lr_ratio=phase.min_lr_ratio)
    use_scaler = cfg.amp_dtype == torch.float16
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    stopper = EarlyStopping(phase)
    history: list[dict[str, float]] = []
    best_state = copy.deepcopy(model.state_dict())
    start_epoch, stopped_early = 0, False

    resume = _load_resume(outputs.last, fingerprint)
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if scaler is not None and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        torch.set_rng_state(resume["rng"])
        stopper.load_state_dict(resume["early_stop"])
        history, best_state = resume["history"], resume["best_model"]
        start_epoch = resume["epoch"] + 1
        log.warning("%s: resuming after epoch %d from %s", phase.name, start_epoch, outputs.last)

    main = dist_info.is_main  # only global rank 0 writes checkpoints and logs
    live = _open_live(outputs.live_dir, history) if main else None
    t0 = time.perf_counter()
    for epoch in range(start_epoch, phase.epochs):
        train_loader.sampler.set_epoch(epoch)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        tr = train_one_epoch(net, train_loader, transform, criterion, optimizer, scheduler, cfg,
                             generator=gen, scaler=scaler, desc=f"{phase.name} {epoch + 1}")
        if tr["skipped"]:
            log.warning("%s epoch %d: skipped %d optimizer step(s) with NaN/Inf loss or "
                        "gradients (train.nonfinite_skip=%d per epoch)", phase.name, epoch + 1,
                        tr["skipped"], train.nonfinite_skip)
        logits, labels = predict_logits(net, val_loader, transform, cfg, desc="val")
        probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
        val = summary_metrics(probs, labels)
        row = {"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"],
               "val_loss": val["loss"], "val_acc": val["accuracy"], "val_auc": val["auc"],
               "val_f1": val["f1_macro"], "lr_head": optimizer.param_groups[0]["lr"]}
        history.append(row)
        if live is not None:
            _log_row(live, row)
        improved, stop = stopper.step(epoch, row[phase.monitor])
        if improved:
            best_state = copy.deepcopy(model.state_dict())
            if main:
                save_checkpoint(outputs.best, {"model": best_state,
                                               "meta": {**meta, "epoch": epoch}})
        stopped_early = stop and epoch + 1 < phase.epochs
        if main:
            save_checkpoint(outputs.last, {
                "fingerprint": fingerprint, "epoch": epoch,
                "complete": stop or epoch + 1 == phase.epochs,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler else None,
                "rng": torch.get_rng_state(), "early_stop": stopper.state_dict(),
                "history": history, "best_model": best_state,
            })
        log.info("%s epoch %d: %s", phase.name, epoch + 1,
                 ", ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)))
        if stop:
            break
    best_epoch = stopper.best_epoch
    if main:
        live.end()
        # Always (re)write the best weights: a resumed run may not improve, and zero epochs
        # keep the initial (pretrained or random) weights.
        save_checkpoint(outputs.best, {"model": best_state, "meta": {**meta, "epoch": best_epoch}})
        if not history:
            _mark_complete(outputs.last, fingerprint)
    distributed.barrier()  # outputs are on disk before any rank reads them
    best_row = next((r for r in history if r["epoch"] == best_epoch), {})
    log.info("%s: %d epochs in %.1fs", phase.name, len(history), time.perf_counter() - t0)
    return {
        "epochs_run": len(history),
        "best_epoch": best_epoch + 1,
        "stopped_early": stopped_early,
        "monitor": phase.monitor,
        **{f"best_{k}": v for k, v in best_row.items() if k.startswith("val_")},
        "final_train_loss": history[-1]["train_loss"] if history else None,
        "final_train_acc": history[-1]["train_acc"] if history else None,
        "phase": asdict(phase),
    }


def _wrap(model: nn.Module, train: TrainParams, d: distributed.DistInfo) -> nn.Module:
    """DistributedDataParallel across ranks and/or ``torch.compile``; ``model`` stays the
    plain module whose ``state_dict`` goes into checkpoints."""
    net = model
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel

        on_gpu = next(model.parameters()).is_cuda
        net = DistributedDataParallel(model, device_ids=[torch.cuda.current_device()]
                                      if on_gpu else None)
    if train.compile:
        net = torch.compile(net)
    return net


def _load_resume(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The last-epoch state if it belongs to this exact configuration and is unfinished."""
    if not path.is_file():
        return None
    state = load_checkpoint(path)
    if state.get("fingerprint") != fingerprint or state.get("complete", True):
        return None
    return state


def _mark_complete(path: Path, fingerprint: str) -> None:
    save_checkpoint(path, {"fingerprint": fingerprint, "epoch": -1, "complete": True})
