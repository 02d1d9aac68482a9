"""Build what a training/evaluation stage needs from params: data, device, model, metadata."""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medclass.config import Params
from medclass.data.cache import load_cached_split
from medclass.data.dataset import CachedDataset
from medclass.errors import MedclassError
from medclass.io import read_json
from medclass.models import create_model, get_spec


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


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


def resolve_device(setting: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if setting == "cuda" and not torch.cuda.is_available():
        raise MedclassError("train.device: cuda requested but no CUDA device is visible; use auto")
    if setting == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def amp_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """Autocast dtype for ``train.precision`` (None = fp32).

    ``auto``: bf16 on CUDA (fp16 where the GPU lacks bf16), fp32 on CPU (bit-reproducible
    default). ``bf16`` also runs on CPU (fast on CPUs with AVX-512 BF16 or AMX); ``fp16`` is
    CUDA-only (it needs a GradScaler, which the CPU path does not use).
    """
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise MedclassError(
                "train.precision: fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        return torch.float16
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise MedclassError("train.precision: this GPU has no bf16 support; use fp16 or auto")
        return torch.bfloat16
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def use_channels_last(setting: str | bool, dtype: torch.dtype | None) -> bool:
    """``train.channels_last``: ``auto`` turns NHWC on with bf16/fp16 autocast."""
    return dtype is not None if setting == "auto" else bool(setting)


def check_image_size(model_name: str, image_size: int) -> None:
    """Refuse an image size below the backbone's minimum before any heavy work."""
    spec = get_spec(model_name)
    if image_size < spec.min_size:
        raise MedclassError(
            f"data.image_size: {image_size} px is below {model_name}'s minimum of "
            f"{spec.min_size} px; raise data.image_size"
        )


def build_model(params: Params, num_classes: int, in_chans: int) -> nn.Module:
    """The backbone named by ``params.model`` with a ``num_classes`` head.

    ``train.drop_path`` > 0 is passed as ``drop_path_rate`` (stochastic depth, timm's
    convention, also our backbones'); a backbone without it is refused in one line.
    """
    kwargs = dict(params.train.model_kwargs)
    rate = params.train.drop_path
    if rate:
        kwargs["drop_path_rate"] = rate
    no_drop_path = MedclassError(
        f"train.drop_path: {params.model} has no stochastic depth (drop_path_rate); "
        "set train.drop_path: 0 or pick a backbone with residual blocks")
    try:
        model = create_model(
            params.model,
            num_classes=num_classes,
            in_chans=in_chans,
            pretrained=params.train.pretrained,
            drop_rate=params.train.drop_rate,
            image_size=params.data.image_size,
            **kwargs,
        )
    except (MedclassError, TypeError) as exc:
        if rate and "drop_path_rate" in f"{exc} {exc.__cause__}":
            raise no_drop_path from None
        raise
    if rate and not any(getattr(m, "drop_prob", 0.0) for m in model.modules()):
        raise no_drop_path  # accepted but ignored (e.g. a timm model taking **kwargs)
    return model


def model_meta(params: Params, data: DataBundle) -> dict[str, Any]:
    """Metadata stored with every checkpoint: enough to rebuild and preprocess."""
    return {
        "model": params.model,
        "model_kwargs": dict(params.train.model_kwargs),
        "drop_rate": params.train.drop_rate,
        "classes": data.classes,
        "image_size": data.image_size,
        "channels": data.in_chans,
        "mean": data.stats["mean"],
        "std": data.stats["std"],
        "params": params.model_dump(mode="json"),
    }


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild a model from a checkpoint's metadata and load its weights."""
    meta = ckpt["meta"]
    model = create_model(
        meta["model"],
        num_classes=len(meta["classes"]),
        in_chans=int(meta["channels"]),
        drop_rate=float(meta.get("drop_rate", 0.0)),
        image_size=int(meta["image_size"]),
        **meta.get("model_kwargs", {}),
    )
    model.load_state_dict(ckpt["model"])
    return model


def fingerprint(*parts: Any, files: tuple[Path, ...] = ()) -> str:
    """Stable hash of JSON-able parts and file contents (decides whether a resume is valid)."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
