"""Tensor datasets over the decode-once cache, epoch-seeded sampling and batch transforms."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler

from medclass.data.augment import (
    Augmenter,
    AugmentSpec,
    check_channels,
    resolve_spec,
    tta_views,
)


class CachedDataset(Dataset):
    """uint8 NCHW images (usually memory-mapped) + int labels; fetches whole batches at once."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def nbytes(self) -> int:
        """Bytes of all its images, from the size of the first (nothing else is read)."""
        return len(self) * self.images[np.zeros(1, np.int64)].nbytes if len(self) else 0

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


class DeviceLoader:
    """Batches of a split held on the training device: the whole uint8 cache and its labels
    are copied there once, and each batch is one ``index_select`` on the device.

    It yields exactly the batches a ``DataLoader`` over the same sampler would (same order,
    same ``drop_last``), so results do not depend on where the data sits; it only removes
    the host gather, the pinned copy and the transfer from every step. A DataLoader cannot
    do this: its pinned-memory path and worker processes assume host tensors. The epoch's
    indices go to the device in one copy, so steps queue without a host sync.
    """

    def __init__(self, dataset: CachedDataset, batch_size: int, sampler: Sampler[int],
                 drop_last: bool, device: torch.device) -> None:
        self.dataset, self.sampler, self.device = dataset, sampler, device
        self.batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.images = _to_device(dataset.images, len(dataset), device)
        self.labels = torch.from_numpy(dataset.labels).to(device)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = list(self.batch_sampler)
        if not batches:
            return
        flat = torch.tensor([i for b in batches for i in b], dtype=torch.int64)
        order = torch.split(flat.to(self.device), [len(b) for b in batches])
        for idx in order:
            yield self.images.index_select(0, idx), self.labels.index_select(0, idx)


def _to_device(images: np.ndarray, n: int, device: torch.device,
               chunk: int = 4096) -> torch.Tensor:
    """``images[:n]`` (an array, memory-mapped or a fold's row view) as one tensor on
    ``device``, copied ``chunk`` rows at a time so host memory holds one chunk, not a copy."""
    first = torch.from_numpy(np.ascontiguousarray(images[np.zeros(1, np.int64)]))
    out = torch.empty((n, *first.shape[1:]), dtype=first.dtype, device=device)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        out[start:rows[-1] + 1] = torch.from_numpy(np.ascontiguousarray(images[rows]))
    return out


def keep_on_device(setting: str | bool, nbytes: int, device: torch.device) -> bool:
    """Whether ``nbytes`` of cached images go to ``device`` (``train.data_on_device``):
    ``auto`` only on CUDA and only when they take at most a quarter of its free memory."""
    if setting != "auto":
        return bool(setting)
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= free // 4


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
    device: torch.device | None = None,
) -> DataLoader | DeviceLoader:
    """DataLoader that fetches whole batches from the cache (no per-image decode or collate);
    with ``device``, a ``DeviceLoader`` holding the split there (same batches).

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
    drop = drop_last and len(sampler) > batch_size
    if device is not None:
        return DeviceLoader(dataset, batch_size, sampler, drop, device)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop,
        collate_fn=_as_batch,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixel values → float32 in [0, 1]."""
    return x.float().div_(255.0)


class BatchTransform:
    """uint8 batch → normalised float batch, with per-sample augmentation when training.

    ``augment`` is a preset name (``none``/``light``/``medical``/``strong``) or an
    ``AugmentSpec`` (see ``medclass.data.augment``); draws come from the generator passed per
    call, so a seeded run augments identically every time.
    """

    def __init__(
        self, mean: Sequence[float], std: Sequence[float], augment: str | AugmentSpec = "none"
    ) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        # a constant training set has std 0: clamp so normalisation never divides by zero
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1).clamp(min=1e-6)
        spec = resolve_spec(augment) if isinstance(augment, str) else augment
        check_channels(spec, self.mean.shape[1])
        self.augmenter = Augmenter(spec) if spec.active else None

    def __call__(
        self,
        x: torch.Tensor,
        *,
        train: bool,
        generator: torch.Generator | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> torch.Tensor:
        """Normalise (and augment when ``train``); ``shard=(rank, world)`` for a DDP shard."""
        x = to_unit(x)
        if train and self.augmenter is not None:
            x = self.augmenter(x, generator, shard)
        return self.normalise(x)

    def views(self, x: torch.Tensor, tta: str = "none") -> list[torch.Tensor]:
        """Normalised evaluation views of a uint8 batch (``tta_views``; one for ``none``)."""
        x = to_unit(x)
        return [self.normalise(view(x)) for view in tta_views(tta)]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` of a float batch in [0, 1]."""
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x - mean) / std
