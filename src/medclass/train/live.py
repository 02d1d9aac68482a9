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
    """One epoch's metrics as one dvclive step."""
    for key, value in row.items():
        if key != "epoch" and value is not None:
            live.log_metric(key.replace("_", "/", 1), value)
    live.next_step()
