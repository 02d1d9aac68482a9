"""DDP probe of ``gpu_check.py``: a few DistributedDataParallel steps with nccl under torchrun.

With ``WORLD_SIZE > 1`` (``python -m medclass.launch --nproc-per-node N``, N >= 2) the process
group comes from ``medclass.train.distributed.init_from_env("cuda")``, the stages' own code
(nccl on CUDA, one GPU per local rank). With one process medclass runs a stage in place without
a process group, so the probe, started by ``torch.distributed.run``, joins a one-rank nccl
group itself. Rank 0 writes the result JSON to ``$MEDCLASS_DDP_PROBE_OUT``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from medclass.models import create_model
from medclass.train import distributed


def join() -> distributed.DistInfo:
    """This process's place in the nccl group torchrun describes."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return distributed.init_from_env("cuda")
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl")
    return distributed.info()


def train_steps(d: distributed.DistInfo, steps: int = 3) -> dict[str, Any]:
    """SGD steps on a different random shard per rank; replicas must stay identical."""
    torch.manual_seed(0)
    model = create_model("simple_cnn", num_classes=4, in_chans=3, image_size=32).cuda()
    net = DistributedDataParallel(model, device_ids=[torch.cuda.current_device()])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator(device="cuda").manual_seed(1 + d.rank)
    loss = torch.zeros(())
    for _ in range(steps):
        x = torch.randn(16, 3, 32, 32, device="cuda", generator=gen)
        y = torch.randint(0, 4, (16,), device="cuda", generator=gen)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    copies = [torch.empty_like(flat) for _ in range(d.world_size)]
    dist.all_gather(copies, flat)
    count = torch.ones((), device="cuda")
    dist.all_reduce(count)
    return {"steps": steps, "replicas_equal": all(torch.equal(c, copies[0]) for c in copies),
            "all_reduce_sum": float(count), "last_loss": float(loss)}


def main() -> None:
    """Join, train, report (rank 0), leave the group."""
    out = Path(os.environ["MEDCLASS_DDP_PROBE_OUT"])
    d = join()
    try:
        result = {"backend": dist.get_backend(), "world_size": d.world_size,
                  "device": torch.cuda.get_device_name(), **train_steps(d)}
        if d.is_main:
            out.write_text(json.dumps(result), encoding="utf-8")
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
