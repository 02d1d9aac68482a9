"""torch.distributed glue: process group from torchrun's environment, rank-0 writes, reductions.

Stages run in one process unless ``train.nproc_per_node * train.nnodes > 1``; then
``medclass.launch`` starts them through torchrun, which sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``.
Every helper here is a no-op (or the identity) in a single process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from medclass.errors import MedclassError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def info() -> DistInfo:
    """The current process group's ranks (rank 0 of 1 when none is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def is_main() -> bool:
    """True on the process that writes outputs, logs and checkpoints (global rank 0)."""
    return info().is_main


def init_from_env(device_setting: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on GPU).

    Without ``WORLD_SIZE > 1`` nothing happens. On CUDA each process takes GPU ``LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        return info()
    use_cuda = device_setting != "cpu" and torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise MedclassError(
                f"train.nproc_per_node asks for GPU {local_rank} but only "
                f"{torch.cuda.device_count()} are visible; lower train.nproc_per_node"
            )
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return info()


def shutdown() -> None:
    """Leave the process group (after a final barrier so no rank exits while others write)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if info().enabled:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place and return it."""
    if info().enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_interleaved(t: torch.Tensor, n: int) -> torch.Tensor:
    """Undo ``DistributedSampler(shuffle=False)`` sharding: rank r held items r, r+W, r+2W, ….

    Every rank passes its equally long shard; all ranks get the first ``n`` items in order.
    """
    d = info()
    if not d.enabled:
        return t[:n]
    parts = [torch.empty_like(t) for _ in range(d.world_size)]
    dist.all_gather(parts, t.contiguous())
    return torch.stack(parts, 1).reshape(-1, *t.shape[1:])[:n]


@contextlib.contextmanager
def session(device_setting: str) -> Iterator[DistInfo]:
    """Process group for the duration of a stage; always torn down, also on errors."""
    d = init_from_env(device_setting)
    try:
        yield d
    except BaseException:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()  # no barrier: the other ranks may never arrive
        raise
    else:
        shutdown()
