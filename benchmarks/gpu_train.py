"""GPU training throughput and utilisation of our training engine (CUDA only).

Trains ``--model`` (default ``timm/resnet50``) at ``--image-size`` (default 224) on random
uint8 images held like the split stage's decode-once cache, through our own path:
``make_loader`` (the images held on the GPU, ``train.data_on_device``; ``--data host``: batch
fetches, pinned memory, worker processes), ``BatchTransform`` (augmentation on the GPU),
``train_one_epoch`` (bf16 autocast, channels_last, no per-step host sync) and our fused AdamW.
A background thread samples GPU utilisation with NVML every 100 ms during the timed steps.

Repeat (on a machine with a CUDA GPU)::

    PYTHONPATH=src python benchmarks/gpu_train.py --model timm/resnet50 --image-size 224

Writes ``benchmarks/results/gpu_train.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, write_results  # noqa: E402

from medclass.data.dataset import BatchTransform, CachedDataset, make_loader  # noqa: E402
from medclass.models import create_model  # noqa: E402
from medclass.train.engine import StepConfig, place_model, train_one_epoch  # noqa: E402
from medclass.train.optim import build_optimizer, build_scheduler  # noqa: E402


class UtilSampler(threading.Thread):
    """Polls NVML GPU utilisation (percent of time a kernel ran) until stopped."""

    def __init__(self, period_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        import pynvml

        pynvml.nvmlInit()
        self.nvml, self.period = pynvml, period_s
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        self.samples: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
            time.sleep(self.period)


def run(model_name: str, size: int, batch: int, steps: int, compile_model: bool,
        precision: str, on_device: bool = False, workers: int = 2) -> dict:
    """Warm up, then time ``steps`` training steps; returns one result row. ``on_device``
    holds the images on the GPU (``DeviceLoader``, ``train.data_on_device``) instead of our
    host loader with ``workers`` processes and pinned memory."""
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    n = batch * (steps + 10)
    images = np.random.default_rng(0).integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    ds = CachedDataset(images, np.arange(n) % 2)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
    cfg = StepConfig(dev, dtype, channels_last=True, progress=False, grad_clip=None)
    model = create_model(model_name, num_classes=2, in_chans=3, image_size=size)
    place_model(model, cfg)
    net = torch.compile(model) if compile_model else model
    opt = build_optimizer(model, head_lr=1e-3, backbone_lr=1e-3, weight_decay=0.05)
    sched = build_scheduler(opt, "constant", epochs=1, steps_per_epoch=1)
    crit = torch.nn.CrossEntropyLoss()
    tf = BatchTransform([0.5] * 3, [0.25] * 3, augment="light")
    gen = torch.Generator().manual_seed(0)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None

    def epoch(n_img: int) -> float:
        part = CachedDataset(images[:n_img], ds.labels[:n_img])
        loader = make_loader(part, batch, shuffle=True, drop_last=True,
                             **({"device": dev} if on_device else
                                {"pin_memory": True, "num_workers": workers}))
        t = time.perf_counter()
        train_one_epoch(net, loader, tf, crit, opt, sched, cfg, generator=gen, scaler=scaler)
        torch.cuda.synchronize()
        return time.perf_counter() - t

    epoch(batch * 10)  # warm-up: cudnn autotuning, compile, allocator
    sampler = UtilSampler()
    sampler.start()
    wall = epoch(batch * steps)
    sampler.stop.set()
    sampler.join()
    util = sampler.samples[2:] or sampler.samples  # skip the first samples (loader start)
    return {"model": model_name, "image_size": size, "batch_size": batch, "steps": steps,
            "precision": precision, "channels_last": True, "compile": compile_model,
            "data": "on device" if on_device else "host loader",
            "loader_workers": None if on_device else workers,
            "img_s": batch * steps / wall, "gpu_util_mean": float(np.mean(util)),
            "gpu_util_median": float(np.median(util)), "util_samples": len(util),
            "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30}


def main() -> None:
    """Parse options, run each configuration, write the JSON and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="timm/resnet50")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--workers", type=int, default=2, help="host loader processes")
    ap.add_argument("--data", choices=["device", "host"], default="device",
                    help="images on the GPU (train.data_on_device) or our host loader")
    ap.add_argument("--compile", choices=["off", "on", "both"], default="both")
    ap.add_argument("--out", default="benchmarks/results/gpu_train.json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_train.py needs a CUDA device (none is visible)")
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    rows = [run(args.model, args.image_size, args.batch_size, args.steps, c, args.precision,
                args.data == "device", args.workers) for c in modes]
    write_results(args.out, {"machine": describe(), "rows": rows, "target_gpu_util": 70})
    print("| model | size | batch | precision | compile | img/s | GPU util % (mean) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['image_size']} | {r['batch_size']} | {r['precision']} | "
              f"{r['compile']} | {r['img_s']:.0f} | {r['gpu_util_mean']:.0f} |")


if __name__ == "__main__":
    main()
