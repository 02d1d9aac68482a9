"""``repro``: exact (pinned, bit-reproducible on any x86-64 CPU) or fast runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medclass.config.base import _Strict
from medclass.config.train import TrainParams


class ReproParams(_Strict):
    """How a run trades speed for bits that reproduce everywhere (``medclass.repro``)."""

    mode: Literal["exact", "fast"] = "exact"
    threads: int = Field(default=2, ge=1, le=256)


def exact_conflicts(repro: ReproParams, train: TrainParams) -> list[str]:
    """What in ``train`` breaks exact mode, each with its fix ([] when fine or fast)."""
    if repro.mode != "exact":
        return []
    problems = {
        "train.precision": (train.precision in ("bf16", "fp16"),
                            f"{train.precision} rounds differently per CPU/GPU; use auto "
                            "(fp32 in exact mode) or fp32"),
        "train.compile": (train.compile, "torch.compile generates code for this CPU's "
                                         "instruction set; set false"),
        "train.deterministic": (not train.deterministic, "false lets cuDNN pick kernels "
                                                         "by timing; set true"),
    }
    return [f"{key}: {why}, or set repro.mode: fast" for key, (bad, why) in problems.items()
            if bad]
