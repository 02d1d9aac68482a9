"""Where the pipeline's stages read and write (relative to the repository root)."""

from __future__ import annotations

from pathlib import Path

RAW_DIR = Path("data/raw")
SPLIT_DIR = Path("data/split")
MODELS_DIR = Path("models")
CKPT_DIR = MODELS_DIR / "ckpt"
METRICS_DIR = Path("metrics")
PLOTS_DIR = Path("plots")
