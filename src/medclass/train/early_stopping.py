"""Early stopping on a phase's monitored validation value (``Phase.monitor``/``patience``)."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medclass.train.loop import Phase

log = logging.getLogger(__name__)

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
