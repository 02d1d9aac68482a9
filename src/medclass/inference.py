"""Batched inference shared by train, evaluate and debug: device, autocast, memory format.

Test-time views come from ``BatchTransform.views`` (``data.augment.tta_views``). Nothing here
knows about optimisation; ``train.engine.StepConfig`` satisfies :class:`RunSettings`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from medclass.data.dataset import BatchTransform
from medclass.errors import MedclassError


class RunSettings(Protocol):
    """What a forward pass needs to know: where, in which precision and memory format."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    progress: bool


@dataclass
class InferConfig:
    """:class:`RunSettings` for inference only (evaluation, export checks)."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    progress: bool = True
    channels_last: bool = False


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


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast context when an AMP dtype is set, else a no-op."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_memory_format(x: torch.Tensor, cfg: RunSettings) -> torch.Tensor:
    """NHWC (``channels_last``) batches when configured: faster convs under bf16/fp16."""
    return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x


def loader_shard(loader: DataLoader) -> tuple[int, int]:
    """(rank, world size) of a loader over a DistributedSampler shard; (0, 1) otherwise."""
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        return sampler.rank, sampler.num_replicas
    return 0, 1


def quiet(cfg: RunSettings) -> bool | None:
    """tqdm ``disable``: True when progress is off; None hides bars on non-TTY (CI) output."""
    return True if not cfg.progress else None


def _gather_shards(t: torch.Tensor, n: int, world: int) -> torch.Tensor:
    """Undo ``DistributedSampler(shuffle=False)``: rank r held items r, r+W, …; first ``n``."""
    if not (dist.is_available() and dist.is_initialized()):
        return t[:n]
    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t.contiguous())
    return torch.stack(parts, 1).reshape(-1, *t.shape[1:])[:n]


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    loader: DataLoader,
    transform: BatchTransform,
    cfg: RunSettings,
    desc: str = "eval",
    tta: str = "none",
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (float32, N×K) and labels for every sample of the dataset, in dataset order.

    ``tta`` (``flip``/``flip_rot``): the logits are the mean over the test-time views.

    Under DDP the loader holds this rank's interleaved shard (``make_loader(shard=(rank, world))``);
    the shards are gathered so every rank returns the whole, ordered result.
    """
    model.eval()
    outs, labels = [], []
    for xb, yb in tqdm(loader, desc=desc, leave=False, disable=quiet(cfg)):
        xb = xb.to(cfg.device, non_blocking=True)
        views = transform.views(xb, tta)  # one view (the image) for "none"
        total = None
        for x in views:
            with autocast(cfg.device, cfg.amp_dtype):
                out = model(to_memory_format(x, cfg)).float()
            total = out if total is None else total + out
        outs.append(total / len(views))
        labels.append(yb.to(cfg.device))
    logits, ys = torch.cat(outs), torch.cat(labels)
    world = loader_shard(loader)[1]
    if world > 1:
        n = len(loader.dataset)
        logits, ys = _gather_shards(logits, n, world), _gather_shards(ys, n, world)
    return logits.cpu().numpy(), ys.cpu().numpy()
