"""dvclive logging of ``fit``'s per-epoch rows (``train/loss``, ``val/auc``, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def open_live(live_dir: Path, history: list[dict[str, float]]) -> Any:
    """A dvclive ``Live`` in ``live_dir``, with ``history`` replayed."""
    from dvclive import Live

    live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)
    for row in history:  # a resumed run replays finished epochs so curves stay whole
        log_row(live, row)
    return live


def log_row(live: Any, row: dict[str, float]) -> None:
    """One epoch's metrics as one dvclive step, logged in sorted key order: a row replayed
    from a JSON record (kfold's finished folds) has its keys sorted, and dvclive writes
    ``metrics.json`` in logging order, so a fresh and a replayed fold give the same bytes."""
    for key in sorted(row):
        if key != "epoch" and row[key] is not None:
            live.log_metric(key.replace("_", "/", 1), row[key])
    live.next_step()
