"""Paths shared by the stages and the error boundary every stage runs inside."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from medclass.config import Params, load_params
from medclass.errors import MedclassError

RAW_DIR = Path("data/raw")
SPLIT_DIR = Path("data/split")
MODELS_DIR = Path("models")
CKPT_DIR = MODELS_DIR / "ckpt"
METRICS_DIR = Path("metrics")
PLOTS_DIR = Path("plots")


def run_stage(name: str, main: Callable[[Params], None]) -> None:
    """Load and validate params.yaml, run ``main``; user errors print one line and exit 2."""
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s", stream=sys.stderr)
    try:
        main(load_params())
    except MedclassError as exc:
        print(f"error [{name}]: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"interrupted [{name}]: rerun the stage to resume", file=sys.stderr)
        raise SystemExit(130) from None
