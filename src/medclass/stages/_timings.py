"""Wall-clock figures (latencies, durations) kept out of the tracked outputs of a stage.

Tracked metrics, plots and models hold only what the computation decides, so a rerun with the
same inputs writes the same bytes (and DVC sees no change). Timings differ on every run: they
go to an untracked log, ``logs/<stage>_timings.json`` (ignored by git, not a DVC output).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medclass.io import write_json

LOGS_DIR = Path("logs")  # beside metrics/ and plots/, but ignored by git and not a DVC out


def is_timing_key(key: str) -> bool:
    """Whether a report key holds a wall-clock figure (``latency_*``, ``*_s``, ``*_ms``)."""
    return "latency" in key or key.endswith(("_s", "_ms"))


def split_timings(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``doc`` without its timing keys, and those keys alone (same nesting; empty parts dropped).

    Nested dicts are split recursively, e.g. ``{"formats": {"onnx": {"latency_ms_b1": 1.0}}}``.
    """
    kept: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    for key, value in doc.items():
        if is_timing_key(key):
            timings[key] = value
        elif isinstance(value, dict):
            kept[key], inner = split_timings(value)
            if inner:
                timings[key] = inner
        else:
            kept[key] = value
    return kept, timings


def timings_path(stage: str) -> Path:
    """``logs/<stage>_timings.json``."""
    return LOGS_DIR / f"{stage}_timings.json"


def write_timings(stage: str, timings: dict[str, Any]) -> Path:
    """Write the stage's timing log atomically, stamped with the time it was recorded (UTC)."""
    path = timings_path(stage)
    recorded = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json(path, {"stage": stage, "recorded_at": recorded, **timings})
    return path
