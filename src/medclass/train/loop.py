"""fit(): epochs, validation, early stopping, best/last checkpoints, resume, dvclive logging."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medclass.config import TrainParams
from medclass.data.augment import resolve_spec
from medclass.data.dataset import BatchTransform, make_loader
from medclass.errors import exception_line
from medclass.evaluate.metrics import summary_metrics
from medclass.io import load_checkpoint, save_checkpoint
from medclass.train import distributed
from medclass.train.context import DataBundle, amp_dtype, resolve_device, use_channels_last
from medclass.train.engine import StepConfig, place_model, predict_logits, train_one_epoch
from medclass.train.freezing import build_freezer, freeze_backbone
from medclass.train.losses import aux_loss_weight, build_criterion
from medclass.train.mixing import build_mixer
from medclass.train.optim import build_optimizer, build_scheduler
from medclass.train.swa import build_averager

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
    milestones: tuple[float, ...] = (0.5, 0.75)  # multistep: epoch fractions of LR x gamma
    gamma: float = 0.1
    unfreeze_epochs: tuple[int, ...] = ()  # gradual: one more layer group trains at each epoch
    freeze_stages: int = 0  # partial: the first N layer groups stay frozen
    swa_start: int | None = None  # SWA: first averaged epoch (0-based); None: off
    swa_lr: float | None = None  # SWA: constant head LR in the averaged epochs; None: schedule


@dataclass(frozen=True)
class Outputs:
    """Where a phase writes: best weights, resumable last state, dvclive folder."""

    best: Path
    last: Path
    live_dir: Path


# Why a monitored value can be undefined (None/NaN), for the warning.
UNDEFINED_WHY = {"val_auc": "a class absent from the validation split?"}


def is_undefined(value: float | None) -> bool:
    """None or NaN/Inf: no value to compare (e.g. AUC with a class absent from validation)."""
    return value is None or not math.isfinite(value)


class EarlyStopping:
    """Tracks the monitored value; ``step`` returns True when training should stop.

    An epoch whose value is undefined (``is_undefined``) is never an improvement: it counts
    towards ``patience`` and never becomes the best epoch. The first one logs a warning.
    """

    def __init__(self, phase: Phase) -> None:
        self.name, self.monitor = phase.name, phase.monitor
        self.mode = "min" if phase.monitor == "val_loss" else "max"
        self.patience, self.min_epochs, self.min_delta = (
            phase.patience, phase.min_epochs, phase.min_delta)
        self.best: float | None = None
        self.best_epoch = -1
        self.bad_epochs = 0
        self.warned = False  # the undefined-value warning, once per run

    def improved(self, value: float | None) -> bool:
        if is_undefined(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def _warn_undefined(self, value: float | None) -> None:
        if self.warned:
            return
        self.warned = True
        why = UNDEFINED_WHY.get(self.monitor) if value is None else None
        log.warning("%s.monitor %s is undefined (%s); such epochs never count as an "
                    "improvement", self.name, self.monitor, why or f"got {value}")

    def step(self, epoch: int, value: float | None) -> tuple[bool, bool]:
        """Record ``value`` for ``epoch``; returns (improved, stop)."""
        better = self.improved(value)
        if is_undefined(value):
            self._warn_undefined(value)
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
        if is_undefined(self.best):  # a NaN best saved before undefined values were skipped
            self.best = None


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


def phase_optimizer(
    model: nn.Module, phase: Phase, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over ``model``'s trainable groups and the per-step LR schedule of ``phase``
    (``fit``, and ``medclass debug lr-schedule``, which plots exactly this)."""
    optimizer = build_optimizer(model, head_lr=phase.head_lr, backbone_lr=phase.backbone_lr,
                                weight_decay=phase.weight_decay, layer_decay=phase.layer_decay)
    scheduler = build_scheduler(optimizer, phase.scheduler, epochs=max(phase.epochs, 1),
                                steps_per_epoch=steps_per_epoch, warmup_epochs=phase.warmup_epochs,
                                min_lr_ratio=phase.min_lr_ratio, milestones=phase.milestones,
                                gamma=phase.gamma)
    return optimizer, scheduler


def check_input_sizes(model: nn.Module, sizes: tuple[int, ...], channels: int,
                      device: torch.device) -> None:
    """One no-grad batch-1 forward per ``train.aug.multiscale`` size, so a model built for a
    fixed input size stops with a one-line error before training, not mid-epoch."""
    if not sizes:
        return
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for size in sizes:
                try:
                    model(torch.zeros(1, channels, size, size, device=device))
                except Exception as e:  # noqa: BLE001 - any failure means the size is unusable
                    raise ValueError(
                        f"train.aug.multiscale: the model cannot take {size} px inputs "
                        f"({exception_line(e, with_type=True, limit=160)}); "
                        "use sizes it accepts or null") from None
    finally:
        model.train(was_training)


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
        freeze_backbone(model)
    dtype = amp_dtype(device, train.precision)
    cfg = StepConfig(device, dtype, train.accum_steps, train.grad_clip, frozen,
                     train.progress and dist_info.is_main,
                     channels_last=use_channels_last(train.channels_last, dtype),
                     log_every=train.log_every, nonfinite_skip=train.nonfinite_skip,
                     aux_loss_weight=aux_loss_weight(model, train.aux_loss_weight))
    place_model(model, cfg)
    spec = resolve_spec(train.augment, train.aug.model_dump())
    transform = BatchTransform(data.stats["mean"], data.stats["std"], spec)
    check_input_sizes(model, spec.multiscale, len(data.stats["mean"]), device)
    train_ds, val_ds = data.splits["train"], data.splits["val"]
    shard = (dist_info.rank, dist_info.world_size) if dist_info.enabled else None
    pin = device.type == "cuda" if train.pin_memory == "auto" else bool(train.pin_memory)
    train_loader = make_loader(train_ds, train.batch_size, shuffle=True, seed=seed,
                               num_workers=train.num_workers, pin_memory=pin, drop_last=True,
                               shard=shard)
    val_loader = make_loader(val_ds, train.eval_batch_size, shuffle=False,
                             num_workers=train.num_workers, pin_memory=pin,
                             shard=shard)
    mixer = build_mixer(train.mixup, len(data.classes), train.label_smoothing)
    criterion = build_criterion(train_ds.labels, len(data.classes),
                                weights_mode=train.class_weights,  # mixer: smoothing in targets
                                label_smoothing=0.0 if mixer else train.label_smoothing,
                                loss=train.loss, focal_gamma=train.focal_gamma,
                                focal_alpha=train.focal_alpha).to(device)
    steps = -(-len(train_loader) // train.accum_steps)
    optimizer, scheduler = phase_optimizer(model, phase, steps)
    freezer = build_freezer(model, phase.unfreeze_epochs, phase.freeze_stages)
    if freezer is not None:  # after the optimizer (it holds every parameter), before DDP
        freezer.apply(0)
    net = _wrap(model, train, dist_info)
    swa = build_averager(model, phase.swa_start, phase.swa_lr, optimizer, steps)
    use_scaler = cfg.amp_dtype == torch.float16
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    stopper = EarlyStopping(phase)
    ema = build_ema(model, train.ema_decay)
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
        if ema is not None:
            ema.load_state_dict(resume["ema"])
        if swa is not None:
            swa.load_state_dict(resume["swa"])
        history, best_state = resume["history"], resume["best_model"]
        start_epoch = resume["epoch"] + 1
        log.warning("%s: resuming after epoch %d from %s", phase.name, start_epoch, outputs.last)

    main = dist_info.is_main  # only global rank 0 writes checkpoints and logs
    live = _open_live(outputs.live_dir, history) if main else None
    t0 = time.perf_counter()
    for epoch in range(start_epoch, phase.epochs):
        train_loader.sampler.set_epoch(epoch)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        if freezer is not None:  # the frozen groups follow from the epoch (also on resume)
            log.info("%s epoch %d: %d of %d layer groups frozen", phase.name, epoch + 1,
                     freezer.apply(epoch), len(freezer.groups))
        sched = scheduler if swa is None else swa.scheduler(epoch, scheduler)
        tr = train_one_epoch(net, train_loader, transform, criterion, optimizer, sched, cfg,
                             generator=gen, scaler=scaler, desc=f"{phase.name} {epoch + 1}",
                             ema=ema, mixer=mixer)
        if swa is not None:
            swa.update(epoch, model)
        if tr["skipped"]:
            log.warning("%s epoch %d: skipped %d optimizer step(s) with NaN/Inf loss or "
                        "gradients (train.nonfinite_skip=%d per epoch)", phase.name, epoch + 1,
                        tr["skipped"], train.nonfinite_skip)
        scored = net if ema is None else ema.module  # the weights that are checkpointed
        logits, labels = predict_logits(scored, val_loader, transform, cfg, desc="val")
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
            best_state = copy.deepcopy((model if ema is None else ema.module).state_dict())
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
                "ema": ema.state_dict() if ema is not None else None,
                "swa": swa.state_dict() if swa is not None else None,
                "history": history, "best_model": best_state,
            })
        log.info("%s epoch %d: %s", phase.name, epoch + 1,
                 ", ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)))
        if stop:
            break
    best_epoch = stopper.best_epoch
    if best_epoch < 0 and history:  # every epoch's monitored value was undefined
        best_state = copy.deepcopy((model if ema is None else ema.module).state_dict())
        best_epoch = history[-1]["epoch"]
        log.warning("%s: no epoch had a defined %s; keeping the last epoch's weights",
                    phase.name, phase.monitor)
    best_row = next((r for r in history if r["epoch"] == best_epoch), {})
    if swa is not None and swa.n_averaged:  # the average replaces the best raw weights
        averaged = swa.finish(model, train_ds, transform, cfg, train.batch_size)
        logits, labels = predict_logits(averaged, val_loader, transform, cfg, desc="val swa")
        val = summary_metrics(torch.softmax(torch.from_numpy(logits), 1).numpy(), labels)
        best_row = {k: val[m] for k, m in MONITOR_KEYS.items()}
        best_state, best_epoch = copy.deepcopy(averaged.state_dict()), history[-1]["epoch"]
        log.info("%s: SWA of %d epochs: %s", phase.name, swa.n_averaged,
                 ", ".join(f"{k}={v:.4f}" for k, v in best_row.items() if v is not None))
    if main:
        live.end()
        # Always (re)write the best weights: a resumed run may not improve, and zero epochs
        # keep the initial (pretrained or random) weights.
        save_checkpoint(outputs.best, {"model": best_state, "meta": {**meta, "epoch": best_epoch}})
        if not history:
            _mark_complete(outputs.last, fingerprint)
    distributed.barrier()  # outputs are on disk before any rank reads them
    log.info("%s: %d epochs in %.1fs", phase.name, len(history), time.perf_counter() - t0)
    return {
        "epochs_run": len(history),
        "best_epoch": best_epoch + 1,
        "stopped_early": stopped_early,
        "monitor": phase.monitor,
        **{f"best_{k}": v for k, v in best_row.items() if k.startswith("val_")},
        "final_train_loss": history[-1]["train_loss"] if history else None,
        "final_train_acc": history[-1]["train_acc"] if history else None,
        **({"swa_epochs": swa.n_averaged} if swa is not None else {}),
        "phase": asdict(phase),
    }


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
