"""Shared fixtures: tiny checkpoints and one export per model per session (LiteRT is slow)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from medclass.config import ExportParams
from medclass.export.pipeline import export_checkpoint
from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS

CLASSES = ["normal", "nodule", "effusion"]
MEAN, STD = [0.45], [0.22]
# name → (registered model, image size, constructor kwargs); tiny widths keep conversion fast
MODELS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "cnn": ("simple_cnn_tiny", 16, {}),
    "transformer": ("deit", 32, dict(TINY_KWARGS["deit"])),
    "mobileone": ("mobileone", 16, dict(TINY_KWARGS["mobileone"])),
}


def make_checkpoint(model: str, size: int, kwargs: dict[str, Any], seed: int = 0,
                    temperature: float | None = None) -> dict[str, Any]:
    """A training-style checkpoint with non-trivial BatchNorm statistics (as after training)."""
    torch.manual_seed(seed)
    net = create_model(model, num_classes=len(CLASSES), in_chans=1, image_size=size, **kwargs)
    net.train()
    with torch.no_grad():  # move BN running stats away from their init so fusion is exercised
        for _ in range(3):
            net(torch.randn(8, 1, size, size) * 2 + 0.5)
    meta = {"model": model, "model_kwargs": kwargs, "drop_rate": 0.0, "classes": CLASSES,
            "image_size": size, "channels": 1, "mean": MEAN, "std": STD,
            "params": {"model": model}, "epoch": 4}
    if temperature is not None:
        meta["temperature"] = temperature
    return {"model": net.state_dict(), "meta": meta}


def sample_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, 1, size, size) images with structure (a bright blob) rather than pure noise."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 80, size=(n, 1, size, size), dtype=np.uint8)
    for i in range(n):
        r, c = rng.integers(0, size - 4, size=2)
        x[i, 0, r:r + 4, c:c + 4] = 230
    return x


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Callable[[str], tuple[Path, dict[str, Any]]]:
    """``exported(key)`` → (export folder, report) for ``MODELS[key]``, every format, once."""
    cache: dict[str, tuple[Path, dict[str, Any]]] = {}

    def get(key: str) -> tuple[Path, dict[str, Any]]:
        if key not in cache:
            model, size, kwargs = MODELS[key]
            out = tmp_path_factory.mktemp(f"export_{key}") / "export"
            params = ExportParams(parity_batch=8, latency_runs=2)
            report = export_checkpoint(make_checkpoint(model, size, kwargs),
                                       sample_images(8, size), params, out)
            cache[key] = (out, report)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def helpers() -> SimpleNamespace:
    """Checkpoint/image factories and constants for test modules (conftest is not importable)."""
    return SimpleNamespace(make_checkpoint=make_checkpoint, images=sample_images, MODELS=MODELS,
                           CLASSES=CLASSES, MEAN=MEAN, STD=STD)
