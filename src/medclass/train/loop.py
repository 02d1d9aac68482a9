"""fit(): epochs, validation, early stopping, best/last checkpoints, resume, dvclive logging."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medclass.config import TrainParams
from medclass.data.augment import resolve_spec
from medclass.data.bundle import DataBundle, Loader, split_loaders
from medclass.data.dataset import BatchTransform, CachedDataset
from medclass.errors import exception_line
from medclass.evaluate.metrics import summary_metrics
from medclass.inference import amp_dtype, predict_logits, resolve_device, use_channels_last
from medclass.io import load_checkpoint, save_checkpoint
from medclass.train import distributed
from medclass.train.early_stopping import EarlyStopping
from medclass.train.engine import StepConfig, place_model, train_one_epoch
from medclass.train.freezing import freeze_backbone
from medclass.train.hooks import Hooks, ema_hook, freezer_hook, mixer_hook, swa_hook
from medclass.train.live import log_row as _log_row
from medclass.train.live import open_live as _open_live
from medclass.train.losses import aux_loss_weight, build_criterion
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


@dataclass
class Run:
    """The state of one ``fit`` call: what it trains with and what it has gathered so far."""

    phase: Phase
    train: TrainParams
    model: nn.Module  # the plain module, whose state_dict goes into checkpoints
    net: nn.Module  # ``model`` wrapped for DDP and/or torch.compile: what trains
    cfg: StepConfig
    transform: BatchTransform
    train_ds: CachedDataset
    train_loader: Loader
    val_loader: Loader
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    hooks: Hooks
    stopper: EarlyStopping
    seed: int
    meta: dict[str, Any]
    outputs: Outputs
    fingerprint: str
    main: bool  # global rank 0: only it writes checkpoints and logs
    best_state: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    start_epoch: int = 0
    stopped_early: bool = False
    live: Any = None  # dvclive.Live on the main rank


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
    run = _setup(model, phase, data, train, seed=seed, meta=meta, outputs=outputs,
                 fingerprint=fingerprint)
    _resume(run)
    run.live = _open_live(outputs.live_dir, run.history) if run.main else None
    t0 = time.perf_counter()
    for epoch in range(run.start_epoch, phase.epochs):
        tr = _train_epoch(run, epoch)
        row = _validate(run, epoch, tr)
        if _end_of_epoch(run, epoch, row):
            break
    best_epoch, best_row = _finish(run)
    log.info("%s: %d epochs in %.1fs", phase.name, len(run.history), time.perf_counter() - t0)
    return _summary(run, best_epoch, best_row)


def probe_epochs(model: nn.Module, phase: Phase, data: DataBundle, train: TrainParams, *,
                 seed: int, outputs: Outputs, min_train_s: float) -> list[tuple[float, float]]:
    """Train epochs exactly as ``fit`` does, without checkpoints or early stopping, until the
    epochs after the first have trained ``min_train_s`` seconds (at most ``phase.epochs``);
    returns (train seconds, validation seconds) per epoch (the budget planner)."""
    run = _setup(model, phase, data, train, seed=seed, meta={}, outputs=outputs,
                 fingerprint="probe")
    times: list[tuple[float, float]] = []
    for epoch in range(phase.epochs):
        t0 = time.perf_counter()
        tr = _train_epoch(run, epoch)
        t1 = time.perf_counter()
        _validate(run, epoch, tr)
        times.append((t1 - t0, time.perf_counter() - t1))
        if sum(t for t, _ in times[1:]) >= min_train_s:
            break
    return times


def _step_config(model: nn.Module, train: TrainParams, device: torch.device,
                 frozen: bool, main: bool) -> StepConfig:
    """How ``fit`` takes optimisation steps, from ``train``."""
    dtype = amp_dtype(device, train.precision)
    return StepConfig(device, dtype, train.accum_steps, train.grad_clip, frozen,
                      train.progress and main,
                      channels_last=use_channels_last(train.channels_last, dtype),
                      log_every=train.log_every, nonfinite_skip=train.nonfinite_skip,
                      aux_loss_weight=aux_loss_weight(model, train.aux_loss_weight))


def _setup(model: nn.Module, phase: Phase, data: DataBundle, train: TrainParams, *,
           seed: int, meta: dict[str, Any], outputs: Outputs, fingerprint: str) -> Run:
    """Place ``model``, build loaders, loss, optimizer and the phase's hooks (fresh state)."""
    device = resolve_device(train.device)
    dist_info = distributed.info()
    if device.type == "cuda" and dist_info.enabled:
        device = torch.device("cuda", torch.cuda.current_device())
    frozen = phase.backbone_lr is None
    if frozen:
        freeze_backbone(model)
    cfg = _step_config(model, train, device, frozen, dist_info.is_main)
    place_model(model, cfg)
    spec = resolve_spec(train.augment, train.aug.model_dump())
    transform = BatchTransform(data.stats["mean"], data.stats["std"], spec)
    check_input_sizes(model, spec.multiscale, len(data.stats["mean"]), device)
    train_ds = data.splits["train"]
    shard = (dist_info.rank, dist_info.world_size) if dist_info.enabled else None
    train_loader, val_loader = split_loaders(data, train, seed, device, shard)
    mixer = mixer_hook(train.mixup, len(data.classes), train.label_smoothing)
    criterion = build_criterion(train_ds.labels, len(data.classes),
                                weights_mode=train.class_weights,  # mixer: smoothing in targets
                                label_smoothing=mixer.loss_smoothing(train.label_smoothing),
                                loss=train.loss, focal_gamma=train.focal_gamma,
                                focal_alpha=train.focal_alpha).to(device)
    steps = -(-len(train_loader) // train.accum_steps)
    optimizer, scheduler = phase_optimizer(model, phase, steps)
    freezer = freezer_hook(model, phase.unfreeze_epochs, phase.freeze_stages, phase.name)
    net = _wrap(model, train, dist_info)
    swa = swa_hook(model, phase.swa_start, phase.swa_lr, optimizer, steps)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp_dtype == torch.float16 else None
    stopper = EarlyStopping(phase)
    hooks = Hooks(freezer=freezer, swa=swa, ema=ema_hook(model, train.ema_decay), mixer=mixer)
    return Run(phase, train, model, net, cfg, transform, train_ds, train_loader, val_loader,
               criterion, optimizer, scheduler, scaler, hooks, stopper, seed, meta, outputs,
               fingerprint, dist_info.is_main, best_state=copy.deepcopy(model.state_dict()))


def _resume(run: Run) -> None:
    """Continue from ``outputs.last`` if it holds an unfinished run of this configuration."""
    resume = _load_resume(run.outputs.last, run.fingerprint)
    if resume is None:
        return
    run.model.load_state_dict(resume["model"])
    run.optimizer.load_state_dict(resume["optimizer"])
    run.scheduler.load_state_dict(resume["scheduler"])
    if run.scaler is not None and resume.get("scaler"):
        run.scaler.load_state_dict(resume["scaler"])
    torch.set_rng_state(resume["rng"])
    run.stopper.load_state_dict(resume["early_stop"])
    run.hooks.load_state_dict(resume)
    run.history, run.best_state = resume["history"], resume["best_model"]
    run.start_epoch = resume["epoch"] + 1
    log.warning("%s: resuming after epoch %d from %s", run.phase.name, run.start_epoch,
                run.outputs.last)


def _train_epoch(run: Run, epoch: int) -> dict[str, float]:
    """One training pass over the training split; returns ``train_one_epoch``'s result."""
    run.train_loader.sampler.set_epoch(epoch)
    gen = torch.Generator().manual_seed(run.seed * 1_000_003 + epoch)
    run.hooks.epoch_start(epoch)
    sched = run.hooks.scheduler(epoch, run.scheduler)
    tr = train_one_epoch(run.net, run.train_loader, run.transform, run.criterion,
                         run.optimizer, sched, run.cfg, generator=gen, scaler=run.scaler,
                         desc=f"{run.phase.name} {epoch + 1}", **run.hooks.train_kwargs())
    run.hooks.epoch_trained(epoch, run.model)
    if tr["skipped"]:
        log.warning("%s epoch %d: skipped %d optimizer step(s) with NaN/Inf loss or "
                    "gradients (train.nonfinite_skip=%d per epoch)", run.phase.name, epoch + 1,
                    tr["skipped"], run.train.nonfinite_skip)
    return tr


def _validate(run: Run, epoch: int, tr: dict[str, float]) -> dict[str, float]:
    """Score the validated weights (EMA's when on); appends and logs the epoch's row."""
    scored = run.hooks.eval_model(run.net)  # the weights that are checkpointed
    logits, labels = predict_logits(scored, run.val_loader, run.transform, run.cfg, desc="val")
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    val = summary_metrics(probs, labels)
    row = {"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"],
           "val_loss": val["loss"], "val_acc": val["accuracy"], "val_auc": val["auc"],
           "val_f1": val["f1_macro"], "lr_head": run.optimizer.param_groups[0]["lr"]}
    run.history.append(row)
    if run.live is not None:
        _log_row(run.live, row)
    return row


def _end_of_epoch(run: Run, epoch: int, row: dict[str, float]) -> bool:
    """Early stopping and the best/last checkpoints; returns whether training stops."""
    phase = run.phase
    improved, stop = run.stopper.step(epoch, row[phase.monitor])
    if improved:
        run.best_state = copy.deepcopy(run.hooks.eval_model(run.model).state_dict())
        if run.main:
            save_checkpoint(run.outputs.best, {"model": run.best_state,
                                               "meta": {**run.meta, "epoch": epoch}})
    run.stopped_early = stop and epoch + 1 < phase.epochs
    if run.main:
        _save_last(run, epoch, complete=stop or epoch + 1 == phase.epochs)
    log.info("%s epoch %d: %s", phase.name, epoch + 1,
             ", ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)))
    return stop


def _save_last(run: Run, epoch: int, *, complete: bool) -> None:
    """The resumable state after ``epoch``."""
    save_checkpoint(run.outputs.last, {
        "fingerprint": run.fingerprint, "epoch": epoch, "complete": complete,
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler else None,
        "rng": torch.get_rng_state(), "early_stop": run.stopper.state_dict(),
        **run.hooks.state_dict(),  # "ema", "swa"
        "history": run.history, "best_model": run.best_state,
    })


def _best(run: Run) -> tuple[int, dict[str, float]]:
    """The best epoch and its row; the last epoch's weights if no value was defined."""
    best_epoch = run.stopper.best_epoch
    if best_epoch < 0 and run.history:  # every epoch's monitored value was undefined
        run.best_state = copy.deepcopy(run.hooks.eval_model(run.model).state_dict())
        best_epoch = run.history[-1]["epoch"]
        log.warning("%s: no epoch had a defined %s; keeping the last epoch's weights",
                    run.phase.name, run.phase.monitor)
    return best_epoch, next((r for r in run.history if r["epoch"] == best_epoch), {})


def _final_weights(run: Run, best_epoch: int,
                   best_row: dict[str, float]) -> tuple[int, dict[str, float]]:
    """Weights that replace the best epoch's (the SWA average, validated); else unchanged."""
    final = run.hooks.final_weights(run.model, run.train_ds, run.transform, run.cfg,
                                    run.train.batch_size)
    if final is None:
        return best_epoch, best_row
    logits, labels = predict_logits(final, run.val_loader, run.transform, run.cfg,
                                    desc="val swa")
    val = summary_metrics(torch.softmax(torch.from_numpy(logits), 1).numpy(), labels)
    best_row = {k: val[m] for k, m in MONITOR_KEYS.items()}
    run.best_state, best_epoch = copy.deepcopy(final.state_dict()), run.history[-1]["epoch"]
    log.info("%s: SWA of %d epochs: %s", run.phase.name, run.hooks.swa.summary()["swa_epochs"],
             ", ".join(f"{k}={v:.4f}" for k, v in best_row.items() if v is not None))
    return best_epoch, best_row


def _finish(run: Run) -> tuple[int, dict[str, float]]:
    """Settle the best weights and write them; returns the best epoch and its row."""
    best_epoch, best_row = _final_weights(run, *_best(run))
    if run.main:
        run.live.end()
        # Always (re)write the best weights: a resumed run may not improve, and zero epochs
        # keep the initial (pretrained or random) weights.
        save_checkpoint(run.outputs.best, {"model": run.best_state,
                                           "meta": {**run.meta, "epoch": best_epoch}})
        if not run.history:
            _mark_complete(run.outputs.last, run.fingerprint)
    distributed.barrier()  # outputs are on disk before any rank reads them
    return best_epoch, best_row


def _summary(run: Run, best_epoch: int, best_row: dict[str, float]) -> dict[str, Any]:
    """``fit``'s return value."""
    history = run.history
    return {
        "epochs_run": len(history),
        "best_epoch": best_epoch + 1,
        "stopped_early": run.stopped_early,
        "monitor": run.phase.monitor,
        **{f"best_{k}": v for k, v in best_row.items() if k.startswith("val_")},
        "final_train_loss": history[-1]["train_loss"] if history else None,
        "final_train_acc": history[-1]["train_acc"] if history else None,
        **run.hooks.summary(),
        "phase": asdict(run.phase),
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
