"""Params and FLOPs of every registered backbone at one image size (README's model table).

    python benchmarks/zoo_table.py --size 224 --classes 1000
"""

from __future__ import annotations

import argparse

from medclass.models import list_models
from medclass.models.checks import count_flops
from medclass.models.registry import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--classes", type=int, default=1000)
    args = ap.parse_args()
    import torch

    print("| name | params (M) | GFLOPs |")
    print("|---|---|---|")
    for name in list_models():
        model = create_model(name, num_classes=args.classes, in_chans=3).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        flops = count_flops(model, torch.randn(1, 3, args.size, args.size)) / 1e9
        print(f"| {name} | {params:.2f} | {flops:.2f} |", flush=True)


if __name__ == "__main__":
    main()
