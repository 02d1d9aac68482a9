"""The split stage's decode-once cache as datasets, with class names and normalisation stats."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from medclass.config import TrainParams
from medclass.data.cache import load_cached_split
from medclass.data.dataset import CachedDataset, DeviceLoader, keep_on_device, make_loader
from medclass.io import read_json

Loader = DataLoader | DeviceLoader  # training batches from the host or the device
log = logging.getLogger(__name__)


@dataclass
class DataBundle:
    """The cached splits plus their class names and normalisation stats."""

    classes: list[str]
    stats: dict[str, Any]
    splits: dict[str, CachedDataset]

    @property
    def in_chans(self) -> int:
        return int(self.stats["channels"])

    @property
    def image_size(self) -> int:
        return int(self.stats["image_size"])


def load_data(split_dir: Path, splits: tuple[str, ...] = ("train", "val")) -> DataBundle:
    """Memory-map the decode-once cache written by the split stage."""
    stats = read_json(split_dir / "stats.json")
    datasets = {}
    for name in splits:
        images, labels = load_cached_split(split_dir / "cache", name)
        datasets[name] = CachedDataset(images, labels)
    return DataBundle(list(stats["classes"]), stats, datasets)


def split_loaders(data: DataBundle, train: TrainParams, seed: int, device: torch.device,
                  shard: tuple[int, int] | None) -> tuple[Loader, Loader]:
    """The shuffled training and the ordered validation loader of ``data`` (per-rank shards
    under DDP), held on ``device`` when ``train.data_on_device`` says so."""
    pin = device.type == "cuda" if train.pin_memory == "auto" else bool(train.pin_memory)
    nbytes = data.splits["train"].nbytes + data.splits["val"].nbytes
    on_device = device if keep_on_device(train.data_on_device, nbytes, device) else None
    if on_device is not None:
        log.info("train/val images held on %s (%.2f GB)", device, nbytes / 1e9)
    common = {"num_workers": train.num_workers, "pin_memory": pin, "shard": shard,
              "device": on_device}
    return (make_loader(data.splits["train"], train.batch_size, shuffle=True, seed=seed,
                        drop_last=True, **common),
            make_loader(data.splits["val"], train.eval_batch_size, shuffle=False, **common))
