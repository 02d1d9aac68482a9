"""The split stage's decode-once cache as datasets, with class names and normalisation stats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medclass.data.cache import load_cached_split
from medclass.data.dataset import CachedDataset
from medclass.io import read_json


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
