"""AdamW with separate head/backbone learning rates, and per-step LR schedules."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import (
    ConstantLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    SequentialLR,
)

from medclass.models import head_and_backbone_params, layer_decay_scales, layer_groups


def no_weight_decay_ids(model: nn.Module) -> set[int]:
    """Ids of the parameters that modules exempt from weight decay through timm's
    ``no_weight_decay()`` convention (names relative to that module): class tokens, position
    embeddings, relative-position tables, in our backbones and in timm's."""
    ids: set[int] = set()
    for module in model.modules():
        exempt = getattr(module, "no_weight_decay", None)
        if callable(exempt):
            names = set(exempt())
            ids.update(id(p) for name, p in module.named_parameters() if name in names)
    return ids


def _decay_split(
    params: list[nn.Parameter], exempt: set[int]
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Weights (≥2-D) get weight decay; biases, norm scales (1-D) and ``exempt`` ids do not."""
    decay = [p for p in params if p.ndim >= 2 and id(p) not in exempt]
    no_decay = [p for p in params if p.ndim < 2 or id(p) in exempt]
    return decay, no_decay


def build_optimizer(
    model: nn.Module,
    *,
    head_lr: float,
    backbone_lr: float | None,
    weight_decay: float,
    layer_decay: float | None = None,
) -> torch.optim.AdamW:
    """AdamW over the head (``head_lr``) and, unless ``backbone_lr`` is None, the backbone.

    With ``layer_decay`` the backbone is split into its layer groups (``layer_groups``), the
    last block at ``backbone_lr`` and each earlier one ``layer_decay`` times lower.
    Groups are named (``head``, ``head_no_decay``, ``backbone``, ``backbone.3``, …) so logs and
    tests can find them.
    """
    head, backbone = head_and_backbone_params(model)
    parts: list[tuple[str, list[nn.Parameter], float]] = [("head", head, head_lr)]
    if backbone_lr is not None and layer_decay is not None:
        groups = layer_groups(model)
        scales = layer_decay_scales(len(groups), layer_decay)
        parts += [(f"backbone.{i}", g, backbone_lr * sc)
                  for i, (g, sc) in enumerate(zip(groups, scales, strict=True))]
    elif backbone_lr is not None:
        parts.append(("backbone", backbone, backbone_lr))
    param_groups = []
    exempt = no_weight_decay_ids(model)
    for name, params, lr in parts:
        decay, no_decay = _decay_split([p for p in params if p.requires_grad], exempt)
        if decay:
            param_groups.append({"name": name, "params": decay, "lr": lr,
                                 "weight_decay": weight_decay})
        if no_decay:
            param_groups.append({"name": f"{name}_no_decay", "params": no_decay, "lr": lr,
                                 "weight_decay": 0.0})
    # The fused kernel, on the CPU too: one pass per tensor, and its square root is the
    # vector instruction, whereas the foreach path's torch.sqrt goes through MKL's vector math,
    # whose code path follows the CPU vendor even under MKL_CBWR (benchmarks/repro_vendors.py)
    fusable = bool(param_groups) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                                         for g in param_groups for p in g["params"])
    return torch.optim.AdamW(param_groups, fused=True if fusable else None)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: str,
    *,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: int = 0,
    min_lr_ratio: float = 0.0,
    milestones: tuple[float, ...] = (0.5, 0.75),
    gamma: float = 0.1,
) -> LRScheduler:
    """Per-step LR schedule: ``cosine`` (linear warmup, cosine), ``onecycle``, ``constant`` or
    ``multistep`` (after warmup, LR × ``gamma`` at each epoch fraction in ``milestones``,
    rounded down to a whole epoch: the MedMNIST protocol's ×0.1 at 50 % and 75 %).

    Built from torch's schedulers: the warmup is ``LinearLR`` (factor ``(s + 1) / (w + 1)`` at
    step ``s`` of ``w``), chained by ``SequentialLR`` to ``ConstantLR``, ``MultiStepLR`` or the
    cosine; ``onecycle`` is ``OneCycleLR``. The cosine stays a closed-form ``LambdaLR``:
    ``CosineAnnealingLR`` takes one absolute ``eta_min`` for every parameter group, while the
    floor here is ``min_lr_ratio`` of each group's own LR (head and backbone differ), and it
    holds the floor after the last step instead of rising again.
    """
    total = max(1, epochs * steps_per_epoch)
    warmup = min(total - 1, warmup_epochs * steps_per_epoch) if total > 1 else 0
    if kind == "onecycle":
        max_lrs = [g["lr"] for g in optimizer.param_groups]
        pct = warmup / total if warmup else 0.3
        return OneCycleLR(optimizer, max_lr=max_lrs, total_steps=max(total, 4),
                          pct_start=min(max(pct, 2.0 / max(total, 4)), 0.5))
    main: LRScheduler
    if kind == "constant":
        main = ConstantLR(optimizer, factor=1.0, total_iters=0)
    elif kind == "multistep":
        # milestone steps counted from the end of the warmup, where this scheduler starts;
        # ones at or before it count from its first step (SequentialLR starts it in closed form)
        steps = [int(m * epochs) * steps_per_epoch - warmup for m in milestones]
        main = MultiStepLR(optimizer, steps, gamma=gamma)
    else:
        span = max(1, total - warmup)

        def cosine(step: int) -> float:
            progress = min(1.0, step / span)
            return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

        main = LambdaLR(optimizer, cosine)
    if not warmup:
        return main
    ramp = LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0,
                    total_iters=warmup)
    return SequentialLR(optimizer, [ramp, main], milestones=[warmup])
