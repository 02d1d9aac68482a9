"""The head and finetune training phases, built from params (shared by the stages and kfold)."""

from __future__ import annotations

import logging

from medclass.config import Params
from medclass.models import get_spec
from medclass.train.loop import Phase

# Fine-tuning pretrained weights: the backbone moves this much slower than the registry suggests
# for training from scratch (a common discriminative-LR ratio between backbone and new head).
PRETRAINED_LR_FACTOR = 0.1


def resolve_head_mode(params: Params) -> str:
    """``auto``: ``frozen`` for pretrained weights, ``full`` for a from-scratch backbone."""
    if params.head.mode != "auto":
        return params.head.mode
    return "frozen" if params.train.pretrained != "none" else "full"


def head_phase(params: Params, mode: str, *, epochs: int | None = None) -> Phase:
    """Stage 1 (``head.*``): single LR; frozen backbone in ``frozen`` mode, no epochs in ``skip``.

    ``epochs`` overrides ``head.epochs`` (kfold uses ``kfold.head_epochs``).
    """
    hp = params.head
    n = hp.epochs if epochs is None else epochs
    return Phase(
        "head",
        epochs=0 if mode == "skip" else n,
        head_lr=hp.lr,
        backbone_lr=None if mode == "frozen" else hp.lr,
        weight_decay=hp.weight_decay,
    )


def resolve_finetune_defaults(params: Params) -> tuple[float, str]:
    """``finetune.backbone_lr_mult``/``scheduler``, with ``auto`` taken from the model registry.

    ``auto`` LR multiplier: the backbone's registered ``lr_mult`` (lower for attention models),
    times ``PRETRAINED_LR_FACTOR`` when ``train.pretrained`` loads weights. ``auto`` scheduler:
    the registered family schedule (warmup + cosine for attention models, OneCycle for CNNs).
    """
    ft, spec = params.finetune, get_spec(params.model)
    mult = ft.backbone_lr_mult
    if mult == "auto":
        mult = spec.lr_mult * (PRETRAINED_LR_FACTOR if params.train.pretrained != "none" else 1.0)
    scheduler = spec.scheduler if ft.scheduler == "auto" else ft.scheduler
    return float(mult), scheduler


def finetune_phase(
    params: Params, *, epochs: int | None = None, patience: int | None = None
) -> Phase:
    """Stage 2 (``finetune.*``): all parameters, separate LRs, schedule, early stopping.

    ``epochs``/``patience`` override ``finetune.epochs``/``finetune.patience`` (kfold).
    ``finetune.strategy`` ``gradual``/``partial`` freeze layer groups (``train.freezing``);
    ``train.swa`` averages the epochs from ``start_frac`` on and turns early stopping off.
    """
    ft = params.finetune
    n_epochs = ft.epochs if epochs is None else epochs
    mult, scheduler = resolve_finetune_defaults(params)
    decay = ft.layer_decay if ft.strategy == "layer_decay" else None
    swa = params.train.swa
    swa_start = (None if swa.start_frac is None
                 else min(n_epochs - 1, int(swa.start_frac * n_epochs)))
    logging.info("finetune: backbone LR x%g of %g, %s schedule%s%s", mult, ft.lr, scheduler,
                 f", layer decay {decay}" if decay else "",
                 f", SWA from epoch {swa_start + 1} (no early stopping)"
                 if swa_start is not None else "")
    return Phase(
        "finetune",
        epochs=n_epochs,
        head_lr=ft.lr,
        backbone_lr=ft.lr * mult,
        weight_decay=ft.weight_decay,
        scheduler=scheduler,
        layer_decay=decay,
        warmup_epochs=ft.warmup_epochs,
        min_lr_ratio=ft.min_lr_ratio,
        milestones=tuple(ft.milestones),
        gamma=ft.gamma,
        monitor=ft.monitor,
        patience=None if swa_start is not None else ft.patience if patience is None else patience,
        min_epochs=ft.min_epochs,
        min_delta=ft.min_delta,
        unfreeze_epochs=tuple(ft.unfreeze_epochs) if ft.strategy == "gradual" else (),
        freeze_stages=ft.freeze_stages if ft.strategy == "partial" else 0,
        swa_start=swa_start,
        swa_lr=swa.lr if swa_start is not None else None,
    )
