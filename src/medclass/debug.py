"""``medclass debug``: overfit one batch, plot the LR schedule, show augmented samples, throughput.

Every tool builds what it needs with the pipeline's own code (params, models, phases, optimizer,
scheduler, loss, the split stage's cache, the training step), so it checks what training runs.
Models are built with random weights (``train.pretrained`` is ignored: nothing is downloaded).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from medclass.config import Params
from medclass.data.augment import resolve_spec
from medclass.data.bundle import DataBundle, load_data
from medclass.data.dataset import BatchTransform, CachedDataset, make_loader
from medclass.errors import MedclassError
from medclass.evaluate.figures import new_figure, save_png
from medclass.inference import amp_dtype, predict_logits, resolve_device, use_channels_last
from medclass.io import write_text
from medclass.models.registry import check_model_name
from medclass.paths import SPLIT_DIR
from medclass.train.context import build_model, check_image_size, seed_everything
from medclass.train.engine import StepConfig, place_model, train_one_epoch
from medclass.train.freezing import freeze_backbone
from medclass.train.loop import phase_optimizer
from medclass.train.losses import build_criterion
from medclass.train.optim import build_optimizer, build_scheduler
from medclass.train.phases import finetune_phase, head_phase, resolve_head_mode

CELL_PX, LABEL_PX, TITLE_PX = 96, 120, 30  # dataset grid: image cell, class label column, title

Echo = Callable[[str], None]


def split_data(splits: tuple[str, ...] = ("train",)) -> DataBundle:
    """The split stage's decode-once cache, or a one-line error saying how to make it."""
    if not (SPLIT_DIR / "stats.json").is_file():
        raise MedclassError(f"{SPLIT_DIR} not found; run `dvc repro split` first")
    return load_data(SPLIT_DIR, splits)


def parse_model_kwargs(text: str | None) -> dict[str, Any] | None:
    """``--model-kwargs`` JSON (an object) → dict; None when not given."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MedclassError(f"--model-kwargs: not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise MedclassError("--model-kwargs: expected a JSON object, e.g. '{\"widths\": [8, 16]}'")
    return value


def make_model(params: Params, name: str, num_classes: int, in_chans: int, image_size: int,
               model_kwargs: dict[str, Any] | None = None,
               drop_rate: float | None = None) -> nn.Module:
    """``build_model`` for backbone ``name`` with random weights.

    Without ``model_kwargs``, ``train.model_kwargs`` apply only when ``name`` is ``params.model``.
    """
    check_model_name(name)
    check_image_size(name, image_size)
    if model_kwargs is None:
        model_kwargs = dict(params.train.model_kwargs) if name == params.model else {}
    train = params.train.model_copy(update={
        "pretrained": "none", "model_kwargs": model_kwargs,
        "drop_rate": params.train.drop_rate if drop_rate is None else drop_rate})
    data = params.data.model_copy(update={"image_size": image_size})
    return build_model(params.model_copy(update={"model": name, "train": train, "data": data}),
                       num_classes, in_chans)


def step_config(params: Params) -> tuple[StepConfig, torch.amp.GradScaler | None]:
    """``train.*``'s step settings (device, precision, clipping; one micro-step, no progress
    bar) and the fp16 grad scaler ``fit`` would use."""
    t = params.train
    device = resolve_device(t.device)
    dtype = amp_dtype(device, t.precision)
    cfg = StepConfig(device, dtype, 1, t.grad_clip, progress=False,
                     channels_last=use_channels_last(t.channels_last, dtype),
                     nonfinite_skip=t.nonfinite_skip)
    return cfg, torch.amp.GradScaler("cuda") if dtype == torch.float16 else None


# --------------------------------------------------------------------------- overfit-batch
@dataclass
class OverfitResult:
    """Losses and accuracies of each step; ``reached_at`` is the first step at the target."""

    losses: list[float] = field(default_factory=list)
    accs: list[float] = field(default_factory=list)
    reached_at: int | None = None
    batch_size: int = 0


def overfit_batch(params: Params, model_name: str, *, batch_size: int = 16, steps: int = 200,
                  lr: float = 1e-3, target: float = 1.0, log_every: int = 10,
                  model_kwargs: dict[str, Any] | None = None,
                  echo: Echo = print) -> OverfitResult:
    """Train ``model_name`` on training's first batch until its train accuracy reaches ``target``.

    No augmentation, label smoothing, class weights, dropout or weight decay; the step is the
    pipeline's (``train_one_epoch`` over the one batch, configured device, precision, clipping).
    The accuracy of step k is that of step k's forward pass (train mode), as training reports it.
    """
    data = split_data()
    seed_everything(params.seed, params.train.deterministic)
    first = make_loader(data.splits["train"], batch_size, shuffle=True, seed=params.seed)
    xb, yb = next(iter(first))
    batch = CachedDataset(xb.numpy(), yb.numpy())
    loader = make_loader(batch, len(batch), shuffle=False)
    model = make_model(params, model_name, len(data.classes), data.in_chans, data.image_size,
                       model_kwargs, drop_rate=0.0)
    cfg, scaler = step_config(params)
    place_model(model, cfg)
    transform = BatchTransform(data.stats["mean"], data.stats["std"], "none")
    criterion = build_criterion(batch.labels, len(data.classes), weights_mode="none",
                                label_smoothing=0.0).to(cfg.device)
    optimizer = build_optimizer(model, head_lr=lr, backbone_lr=lr, weight_decay=0.0)
    scheduler = build_scheduler(optimizer, "constant", epochs=steps, steps_per_epoch=1)
    gen = torch.Generator().manual_seed(params.seed)
    result = OverfitResult(batch_size=len(batch))
    echo(f"overfit-batch {model_name}: {len(batch)} images, {len(data.classes)} classes, "
         f"lr {lr:g}, up to {steps} steps on {cfg.device.type}")
    for step in range(1, steps + 1):
        try:
            out = train_one_epoch(model, loader, transform, criterion, optimizer, scheduler, cfg,
                                  generator=gen, scaler=scaler, desc="overfit-batch")
        except MedclassError as exc:
            raise MedclassError(f"overfit-batch: non-finite loss or weights at step {step}; "
                                f"lower --lr (losses so far: {curve(result.losses)})") from exc
        result.losses.append(out["loss"])
        result.accs.append(out["acc"])
        done = out["acc"] >= target
        if step % log_every == 0 or step == 1 or done:
            echo(f"step {step:5d}  loss {out['loss']:.4f}  acc {out['acc']:.3f}")
        if done:
            result.reached_at = step
            break
    return result


def curve(losses: Sequence[float]) -> str:
    """The loss curve as a compact list."""
    return "[" + ", ".join(f"{v:.4g}" for v in losses) + "]"


# --------------------------------------------------------------------------- lr-schedule
@dataclass
class PhaseSchedule:
    """Per-step LR of each named param group of one phase (``lrs[group][step]``)."""

    name: str
    detail: str
    steps_per_epoch: int
    lrs: dict[str, list[float]]


def steps_per_epoch(params: Params, n_train: int) -> int:
    """Optimizer steps per epoch as ``fit`` counts them (drop_last loader, accumulation, DDP)."""
    t = params.train
    world = t.nproc_per_node * t.nnodes
    ds = CachedDataset(np.zeros((n_train, 1, 1, 1), np.uint8), np.zeros(n_train, np.int64))
    loader = make_loader(ds, t.batch_size, shuffle=True, drop_last=True,
                         shard=(0, world) if world > 1 else None)
    return -(-len(loader) // t.accum_steps)


def phase_schedules(params: Params, data: DataBundle) -> list[PhaseSchedule]:
    """The head and finetune LR schedules exactly as ``fit`` configures them (all epochs)."""
    spe = steps_per_epoch(params, len(data.splits["train"]))
    mode = resolve_head_mode(params)
    out = []
    for phase in (head_phase(params, mode), finetune_phase(params)):
        torch.manual_seed(params.seed)
        model = make_model(params, params.model, len(data.classes), data.in_chans,
                           data.image_size)
        if phase.backbone_lr is None:  # frozen backbone: only the head trains (as in fit)
            freeze_backbone(model)
        opt, sched = phase_optimizer(model, phase, spe)
        lrs: dict[str, list[float]] = {g["name"]: [] for g in opt.param_groups}
        for _ in range(phase.epochs * spe):
            for g in opt.param_groups:
                lrs[g["name"]].append(float(g["lr"]))
            opt.step()  # no gradients: parameters stay put, but the scheduler sees a step
            sched.step()
        extra = f"{mode}, " if phase.name == "head" else ""
        detail = f"{extra}{phase.scheduler}, {phase.epochs} epochs x {spe} steps"
        out.append(PhaseSchedule(phase.name, detail, spe, lrs))
    return out


def write_lr_schedule(schedules: list[PhaseSchedule], out: Path) -> Path:
    """PNG of every group's LR per phase, and a CSV beside it (phase,step,epoch,group,lr)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["phase", "step", "epoch", "group", "lr"])
    for s in schedules:
        for group, values in s.lrs.items():
            for i, v in enumerate(values):
                w.writerow([s.name, i, i // s.steps_per_epoch, group, repr(v)])
    csv_path = out.with_suffix(".csv")
    write_text(csv_path, buf.getvalue())
    fig = new_figure(5.6 * len(schedules), 4.0)  # 100 dpi
    for i, s in enumerate(schedules, 1):
        ax = fig.add_subplot(1, len(schedules), i)
        for group, values in s.lrs.items():
            ax.plot(values, label=group, linestyle="--" if group.endswith("_no_decay") else "-")
        ax.set_title(f"{s.name} ({s.detail})", fontsize=9)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.set_ylim(bottom=0)
        if any(s.lrs.values()):
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no steps (0 epochs)", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    save_png(fig, out)
    return csv_path


def schedule_summary(schedules: list[PhaseSchedule]) -> list[str]:
    """One line per phase and group: peak and final LR."""
    lines = []
    for s in schedules:
        lines.append(f"{s.name}: {s.detail}")
        for group, values in s.lrs.items():
            if values:
                lines.append(f"  {group:20s} peak {max(values):.3e}  final {values[-1]:.3e}")
    return lines


# --------------------------------------------------------------------------- dataset
def dataset_grid(params: Params, out: Path, *, per_class: int = 8) -> tuple[int, int]:
    """PNG grid: a row per class of ``per_class`` augmented training samples; returns (w, h) px.

    Samples are drawn with ``seed``, augmented by the configured ``train.augment``/``train.aug``
    through ``BatchTransform`` with the generator of training's first epoch, then un-normalised.
    """
    data = split_data()
    train = data.splits["train"]
    rng = np.random.default_rng(params.seed)
    idx: list[int] = []
    for c in range(len(data.classes)):
        pool = np.flatnonzero(train.labels == c)
        if len(pool):
            idx += rng.choice(pool, per_class, replace=len(pool) < per_class).tolist()
    spec = resolve_spec(params.train.augment, params.train.aug.model_dump())
    transform = BatchTransform(data.stats["mean"], data.stats["std"], spec)
    xb, yb = train.__getitems__(idx)
    gen = torch.Generator().manual_seed(params.seed * 1_000_003)  # fit's epoch-0 generator
    x = transform(xb, train=True, generator=gen) * transform.std + transform.mean
    images = x.clamp(0, 1).numpy()
    width, height = LABEL_PX + per_class * CELL_PX, TITLE_PX + len(data.classes) * CELL_PX
    fig = new_figure((width + 0.5) / 100, (height + 0.5) / 100)  # 100 dpi; Agg truncates to int px
    knobs = spec.describe()
    fig.text(4 / width, 1 - TITLE_PX / 2 / height,
             f"train.augment: {params.train.augment} ({knobs}), seed {params.seed}",
             va="center", fontsize=8)
    slots = {c: 0 for c in range(len(data.classes))}
    for img, label in zip(images, yb.tolist(), strict=True):
        col = slots[label]
        slots[label] += 1
        top = TITLE_PX + label * CELL_PX
        ax = fig.add_axes(((LABEL_PX + col * CELL_PX + 2) / width, 1 - (top + CELL_PX - 2) / height,
                           (CELL_PX - 4) / width, (CELL_PX - 4) / height))
        gray = img.shape[0] == 1
        ax.imshow(img[0] if gray else np.moveaxis(img[:3], 0, -1), cmap="gray" if gray else None,
                  vmin=0, vmax=1, interpolation="nearest", aspect="auto")
        ax.set_axis_off()
    for c, name in enumerate(data.classes):
        counts = int((train.labels == c).sum())
        fig.text(4 / width, 1 - (TITLE_PX + (c + 0.5) * CELL_PX) / height, f"{name}\n(n={counts})",
                 va="center", fontsize=8)
    save_png(fig, out)
    return width, height


# --------------------------------------------------------------------------- throughput
class _Tiled:
    """``n`` images indexed from one batch (a virtual dataset: no memory per extra image)."""

    def __init__(self, batch: np.ndarray, n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        return self.batch[np.asarray(idx) % len(self.batch)]


def throughput(params: Params, model_name: str, *, batch_size: int = 32, iters: int = 10,
               warmup: int = 2, image_size: int | None = None, channels: int | None = None,
               model_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Images/s of a forward pass (eval, no grad) and of a training step, on random images.

    Both run the pipeline's code: ``predict_logits`` (normalise + forward) and
    ``train_one_epoch`` (configured augmentation, forward, loss, backward, clipping, AdamW step),
    at the configured device and precision and ``data.image_size``, with the split's channels
    and classes (without a split: ``data.channels``, 3 for ``auto``; 2 classes); the options
    override size and channels.
    """
    num_classes, mean, std = 2, [0.5], [0.25]
    if (SPLIT_DIR / "stats.json").is_file():
        stats = split_data(()).stats
        num_classes, mean, std = len(stats["classes"]), stats["mean"], stats["std"]
        channels = channels or int(stats["channels"])
    size = image_size or params.data.image_size
    chans = channels or (params.data.channels if params.data.channels != "auto" else 3)
    if len(mean) != chans:
        mean, std = [float(np.mean(mean))] * chans, [float(np.mean(std))] * chans
    torch.manual_seed(params.seed)
    model = make_model(params, model_name, num_classes, chans, size, model_kwargs)
    cfg, scaler = step_config(params)
    place_model(model, cfg)
    g = torch.Generator().manual_seed(params.seed)
    batch = torch.randint(0, 256, (batch_size, chans, size, size), generator=g, dtype=torch.uint8)
    labels = torch.arange(batch_size) % num_classes
    spec = resolve_spec(params.train.augment, params.train.aug.model_dump())
    transform = BatchTransform(mean, std, spec)

    def loader(n_batches: int) -> DataLoader:
        n = n_batches * batch_size
        ds = CachedDataset(_Tiled(batch.numpy(), n), labels.numpy()[np.arange(n) % batch_size])
        return make_loader(ds, batch_size, shuffle=False)

    criterion = build_criterion(labels.numpy(), num_classes, weights_mode="none",
                                label_smoothing=params.train.label_smoothing).to(cfg.device)
    ft = params.finetune
    optimizer = build_optimizer(model, head_lr=ft.lr, backbone_lr=ft.lr,
                                weight_decay=ft.weight_decay)
    scheduler = build_scheduler(optimizer, "constant", epochs=1, steps_per_epoch=warmup + iters)

    runs: dict[str, Callable[[int], Any]] = {
        "forward": lambda n: predict_logits(model, loader(n), transform, cfg),
        "train_step": lambda n: train_one_epoch(model, loader(n), transform, criterion, optimizer,
                                                scheduler, cfg, generator=g, scaler=scaler)}
    result: dict[str, Any] = {
        "model": model_name, "device": str(cfg.device),
        "precision": str(cfg.amp_dtype).removeprefix("torch.") if cfg.amp_dtype else "fp32",
        "image_size": size, "channels": chans, "batch_size": batch_size, "iters": iters,
        "params": sum(p.numel() for p in model.parameters())}
    for key, fn in runs.items():
        if warmup:
            fn(warmup)
        if cfg.device.type == "cuda":
            torch.cuda.synchronize(cfg.device)
        t0 = time.perf_counter()
        fn(iters)  # both end with a host sync (results copied to the CPU)
        seconds = time.perf_counter() - t0
        result[f"{key}_images_per_s"] = batch_size * iters / seconds
        result[f"{key}_ms_per_batch"] = 1000 * seconds / iters
    return result


def throughput_table(r: dict[str, Any]) -> list[str]:
    """A small text table of ``throughput``'s result."""
    return [f"{r['model']}: {r['params']:,} params, {r['image_size']} px x {r['channels']} ch, "
            f"batch {r['batch_size']}, {r['device']}, {r['precision']}, {r['iters']} timed iters",
            f"{'':12s}{'images/s':>12s}{'ms/batch':>12s}",
            *(f"{label:12s}{r[f'{k}_images_per_s']:12.1f}{r[f'{k}_ms_per_batch']:12.2f}"
              for label, k in (("forward", "forward"), ("train step", "train_step")))]
