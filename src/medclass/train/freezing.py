"""Staged fine-tuning: which backbone layer groups train at each epoch of a phase.

``finetune.strategy: gradual`` starts with the head alone and unfreezes one more layer group
(``medclass.models.layer_groups``, the last block first) at each epoch listed in
``finetune.unfreeze_epochs``; ``partial`` freezes the first ``finetune.freeze_stages`` groups
(stem first) for the whole phase. The head always trains.

The frozen set is a function of the epoch alone, so a resumed run recomputes it; the optimizer
holds every parameter from the start (AdamW skips parameters without a gradient: no update, no
weight decay, no state), so the LR schedule and the optimizer state survive a resume.
Frozen groups' BatchNorm layers stay in eval mode (``engine.set_train_mode``): their running
statistics do not move either.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from medclass.errors import MedclassError
from medclass.models import layer_groups


def freeze_backbone(model: nn.Module) -> None:
    """Only the classifier head trains (``head.mode: frozen``)."""
    head_ids = {id(p) for p in model.get_classifier().parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in head_ids)


def own_params_frozen(module: nn.Module) -> bool:
    """Whether ``module`` has parameters of its own and none of them trains."""
    own = list(module.parameters(recurse=False))
    return bool(own) and not any(p.requires_grad for p in own)


class LayerFreezer:
    """Sets ``requires_grad`` of the backbone's layer groups for an epoch."""

    def __init__(
        self, model: nn.Module, *, unfreeze_epochs: Sequence[int] = (), freeze_stages: int = 0
    ) -> None:
        self.groups = layer_groups(model)
        self.unfreeze_epochs = tuple(unfreeze_epochs)
        self.freeze_stages = freeze_stages
        n, name = len(self.groups), type(model).__name__
        if len(self.unfreeze_epochs) > n:
            raise MedclassError(
                f"finetune.unfreeze_epochs: {len(self.unfreeze_epochs)} epochs listed but "
                f"{name} has {n} layer groups; list at most {n}"
            )
        if freeze_stages >= n:
            raise MedclassError(
                f"finetune.freeze_stages: {freeze_stages} freezes all {n} layer groups of "
                f"{name}; use at most {n - 1} (or head.mode: frozen for the head alone)"
            )

    def frozen_at(self, epoch: int) -> int:
        """How many layer groups, counted from the stem, are frozen during ``epoch`` (0-based)."""
        if self.unfreeze_epochs:
            return len(self.groups) - sum(e <= epoch for e in self.unfreeze_epochs)
        return self.freeze_stages

    def apply(self, epoch: int) -> int:
        """Freeze the first ``frozen_at(epoch)`` groups, unfreeze the rest; returns that count."""
        frozen = self.frozen_at(epoch)
        for i, group in enumerate(self.groups):
            for p in group:
                p.requires_grad_(i >= frozen)
        return frozen


def build_freezer(
    model: nn.Module, unfreeze_epochs: Sequence[int], freeze_stages: int
) -> LayerFreezer | None:
    """A ``LayerFreezer`` for a phase's ``unfreeze_epochs``/``freeze_stages``; None when both
    are off (every parameter trains)."""
    if not unfreeze_epochs and not freeze_stages:
        return None
    return LayerFreezer(model, unfreeze_epochs=unfreeze_epochs, freeze_stages=freeze_stages)
