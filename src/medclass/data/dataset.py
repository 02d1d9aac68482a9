"""Tensor datasets over the decode-once cache, epoch-seeded sampling and batch transforms."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler


class CachedDataset(Dataset):
    """uint8 NCHW images (usually memory-mapped) + int labels; fetches whole batches at once."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        x = torch.from_numpy(np.ascontiguousarray(self.images[idx]))
        y = torch.from_numpy(self.labels[idx])
        return x, y


def _as_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate for ``__getitems__`` batches: they are already tensors."""
    return batch


class EpochSampler(Sampler[int]):
    """Shuffles with a permutation seeded by ``seed + epoch`` (resumable on any epoch)."""

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def make_loader(
    dataset: CachedDataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    drop_last: bool = False,
    shard: tuple[int, int] | None = None,
) -> DataLoader:
    """DataLoader that fetches whole batches from the cache (no per-image decode or collate).

    ``shard=(rank, world)``: a ``DistributedSampler`` shard for DDP, with ``batch_size`` (the
    global batch) split over the ranks. Its shuffle draws the same ``randperm(seed + epoch)`` as
    ``EpochSampler`` and rank r takes items r, r+W, …, so the ranks' shards of step i together
    are exactly the single-process batch i.
    """
    sampler: Sampler[int]
    if shard is not None and shard[1] > 1:
        rank, world = shard
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by {world} processes")
        batch_size //= world
        # training drops the ragged tail (like the single-process loader); evaluation pads it
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle,
                                     seed=seed, drop_last=drop_last)
    else:
        sampler = EpochSampler(len(dataset), seed, shuffle)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last and len(sampler) > batch_size,
        collate_fn=_as_batch,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )


class BatchTransform:
    """uint8 batch → normalised float batch, with per-sample augmentation on tensors.

    ``light`` augmentation: random affine (rotation ±10°, scale 0.9–1.1, shift ±6%) and
    brightness/contrast jitter ±10%, drawn per sample from a seeded generator. No flips: left and
    right carry anatomy in chest films (the recipe issue adds flip knobs).
    """

    def __init__(
        self, mean: Sequence[float], std: Sequence[float], augment: str = "none"
    ) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        # a constant training set has std 0: clamp so normalisation never divides by zero
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1).clamp(min=1e-6)
        self.augment = augment

    def __call__(
        self,
        x: torch.Tensor,
        *,
        train: bool,
        generator: torch.Generator | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> torch.Tensor:
        """Normalise (and augment when ``train``); ``shard=(rank, world)`` for a DDP shard."""
        x = x.float().div_(255.0)
        if train and self.augment == "light":
            x = self._light(x, generator, shard)
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x - mean) / std

    @staticmethod
    def _light(
        x: torch.Tensor, g: torch.Generator | None, shard: tuple[int, int] = (0, 1)
    ) -> torch.Tensor:
        n = x.shape[0]
        rank, world = shard

        def uniform(lo: float, hi: float) -> torch.Tensor:
            # draw for the whole global batch, keep this shard's samples (items rank::world):
            # every rank then augments its images exactly as a single process would
            u = torch.rand(n * world, generator=g)[rank::world]
            return u.to(x.device) * (hi - lo) + lo

        angle = uniform(-10.0, 10.0) * (math.pi / 180.0)
        scale = uniform(0.9, 1.1)
        tx, ty = uniform(-0.12, 0.12), uniform(-0.12, 0.12)  # grid units: 0.12 = 6% of the side
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        bright = uniform(-0.1, 0.1).view(n, 1, 1, 1)
        contrast = uniform(0.9, 1.1).view(n, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return ((x - mean) * contrast + mean + bright).clamp_(0.0, 1.0)
