"""Parity of an exported artifact against the PyTorch model, and CPU latency."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np


def compare(reference: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
    """Max absolute logit difference and top-1 agreement of ``outputs`` vs ``reference``."""
    reference = np.asarray(reference, dtype=np.float64)
    outputs = np.asarray(outputs, dtype=np.float64)
    if reference.shape != outputs.shape:
        raise ValueError(f"output shape {outputs.shape} != reference {reference.shape}")
    if not np.isfinite(outputs).all():
        raise ValueError("non-finite outputs")
    agree = (reference.argmax(1) == outputs.argmax(1)).mean() if len(reference) else 1.0
    return {"max_abs_diff": float(np.abs(reference - outputs).max(initial=0.0)),
            "top1_agreement": float(agree)}


def tile_batch(x: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` rows of ``x`` repeated as often as needed."""
    reps = -(-n // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:n])


def median_latency_ms(fn: Callable[[np.ndarray], object], x: np.ndarray, runs: int,
                      warmup: int = 3) -> float:
    """Median wall time of ``runs`` calls after ``warmup`` calls, in milliseconds.

    Several warm-ups matter: TorchScript's profiling executor re-optimises the first calls.
    """
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1000.0)
    return round(statistics.median(times), 3)


def parity_failure(result: dict[str, float], tolerance: float, strict_top1: bool) -> str | None:
    """Why ``result`` fails the parity requirement, or None when it passes."""
    if result["max_abs_diff"] > tolerance:
        return f"parity: max_abs_diff {result['max_abs_diff']:.3g} > tolerance {tolerance:g}"
    if strict_top1 and result["top1_agreement"] < 1.0:
        return f"parity: top-1 agreement {result['top1_agreement']:.3f} < 1"
    return None
