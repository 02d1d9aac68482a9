"""CPU cost of each augmentation setting: training-batch transforms per second.

Times ``BatchTransform(..., train=True)`` (uint8 cache batch → augmented, normalised float
batch, exactly what training does per step) for every preset and for the knobs that are off
in every preset, on random uint8 batches of 64 grayscale images at 28 and 224 px, with a seeded
generator as in training. The median over ``--repeats`` timed calls after warm-up is reported
as images per second; compare it with the model's training throughput
(``benchmarks/results/train_throughput.json``) to see whether augmentation can become the
bottleneck.

Repeat (repo root, venv active; about a minute on 2 cores):

    python benchmarks/augment_speed.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe, write_results  # noqa: E402

from medclass.data.augment import AugmentSpec, resolve_spec  # noqa: E402
from medclass.data.dataset import BatchTransform  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "augment_speed.json"
# setting -> its spec for an image side (multi-scale sizes depend on the side)
SETTINGS: dict[str, Callable[[int], AugmentSpec]] = {
    **{f"preset {name}": (lambda side, name=name: resolve_spec(name))
       for name in ("none", "light", "medical", "strong")},
    "clahe 1.0": lambda side: AugmentSpec(clahe=1.0),
    "randaugment (2 ops, 9)": lambda side: AugmentSpec(policy="randaugment"),
    "trivialaugment": lambda side: AugmentSpec(policy="trivialaugment"),
    "multiscale (0.86/1/1.14 x side)": lambda side: AugmentSpec(
        multiscale=(round(side * 0.86), side, round(side * 1.14))),
}


def time_setting(spec: AugmentSpec, side: int, batch: int, repeats: int) -> float:
    """Median images/s of the training transform for one setting."""
    tf = BatchTransform([0.5], [0.25], spec)
    x = torch.randint(0, 256, (batch, 1, side, side), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        tf(x, train=True, generator=g)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        tf(x, train=True, generator=g)
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[28, 224])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    rows: dict[str, Any] = {}
    for name, spec in SETTINGS.items():
        rows[name] = {}
        for side in args.sizes:
            ips = time_setting(spec(side), side, args.batch, args.repeats)
            rows[name][f"{side}px_images_per_s"] = round(ips)
            print(f"{name:34s} {side:4d} px: {ips:10.0f} img/s", file=sys.stderr, flush=True)
    write_results(args.out, {"batch": args.batch, "channels": 1, "repeats": args.repeats,
                             "threads": torch.get_num_threads(), "settings": rows,
                             "machine": describe()})


if __name__ == "__main__":
    main()
