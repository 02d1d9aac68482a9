"""The head and finetune training phases, built from params (shared by the stages and kfold)."""

from __future__ import annotations

from medclass.config import Params
from medclass.train.loop import Phase


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


def finetune_phase(
    params: Params, *, epochs: int | None = None, patience: int | None = None
) -> Phase:
    """Stage 2 (``finetune.*``): all parameters, separate LRs, schedule, early stopping.

    ``epochs``/``patience`` override ``finetune.epochs``/``finetune.patience`` (kfold).
    """
    ft = params.finetune
    return Phase(
        "finetune",
        epochs=ft.epochs if epochs is None else epochs,
        head_lr=ft.lr,
        backbone_lr=ft.lr * ft.backbone_lr_mult,
        weight_decay=ft.weight_decay,
        scheduler=ft.scheduler,
        warmup_epochs=ft.warmup_epochs,
        min_lr_ratio=ft.min_lr_ratio,
        monitor=ft.monitor,
        patience=ft.patience if patience is None else patience,
        min_epochs=ft.min_epochs,
        min_delta=ft.min_delta,
    )
