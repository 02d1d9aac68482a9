"""Machine description embedded in every benchmark results JSON (no hostname, no user names).

``describe()`` is called when a benchmark finishes so ``loadavg`` shows whether the machine was
busy with other work while it ran; ``write_results`` writes the JSON atomically.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from medclass.io import write_json

_PACKAGES = ("torch", "onnxruntime", "onnx", "ai-edge-litert", "litert-torch", "timm", "dvc")


def _cpu_model() -> str:
    """CPU model name (the planner's own reading, ``medclass.plan_probe.cpu_name``)."""
    from medclass.plan_probe import cpu_name

    return cpu_name()


def _ram_gib() -> float | None:
    """Total physical memory in GiB (None where sysconf does not say)."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape the timings (None when not installed)."""
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def describe() -> dict[str, Any]:
    """Hostname-free facts about this machine and its load right now."""
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "ram_gib": _ram_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": _versions(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "loadavg_1_5_15": load,
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_results(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON atomically and print where it went."""
    write_json(path, payload)
    print(f"wrote {path}")
