"""Batch mixing (``train.mixup``): timm's ``Mixup``/CutMix inside the training step.

timm draws from NumPy's global generator; each batch's draws here come from a seed taken from
the epoch's torch generator (the one the augmentation uses), with NumPy's global state saved
and restored around them, so a seeded run (and its resume) mixes identically every time.

Under DDP the ranks hold interleaved shards of each global batch. Mixing pairs image i with
image B-1-i of the global batch, which lives on another rank, so the shards are gathered, mixed
with the same draws on every rank, and each rank keeps its own shard: exactly the
single-process batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from medclass.config import MixupParams
from medclass.train import distributed


@contextlib.contextmanager
def numpy_seeded(seed: int) -> Iterator[None]:
    """NumPy's global generator seeded with ``seed`` inside, restored afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class BatchMixer:
    """Mixup/CutMix of a normalised batch; returns it with soft targets (rows summing to 1).

    One ``lam`` per batch (timm ``mode="batch"``); label smoothing goes into the targets.
    """

    def __init__(self, params: MixupParams, num_classes: int, label_smoothing: float) -> None:
        from timm.data import Mixup

        self.num_classes, self.label_smoothing = num_classes, label_smoothing
        self.mixup = Mixup(mixup_alpha=params.mixup_alpha, cutmix_alpha=params.cutmix_alpha,
                           prob=params.prob, switch_prob=params.switch_prob, mode="batch",
                           label_smoothing=label_smoothing, num_classes=num_classes)

    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        shard: tuple[int, int] = (0, 1),
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from timm.data.mixup import mixup_target

        seed = int(torch.randint(0, 2**32 - 1, (), generator=generator))
        rank, world = shard
        if world > 1:
            x = distributed.gather_interleaved(x, len(x) * world)
            y = distributed.gather_interleaved(y, len(y) * world)
        n = len(x) - len(x) % 2  # timm mixes even batches; an odd last image stays as it is
        with numpy_seeded(seed):
            mixed, target = self.mixup(x[:n], y[:n]) if n else (x[:0], None)
        if n < len(x):
            rest = mixup_target(y[n:], self.num_classes, 1.0, self.label_smoothing)
            target = rest if target is None else torch.cat([target, rest])
            mixed = torch.cat([mixed, x[n:]])
        if world > 1:
            return mixed[rank::world].contiguous(), target[rank::world]
        return mixed, target


def build_mixer(
    params: MixupParams, num_classes: int, label_smoothing: float
) -> BatchMixer | None:
    """The batch mixer for ``train.mixup``; None (off) while both alphas are 0."""
    return BatchMixer(params, num_classes, label_smoothing) if params.active else None
