"""Run the verify checks for every backbone at its registered default size (and 32 px).

    python benchmarks/verify_default_sizes.py            # all from-scratch + documented timm
    python benchmarks/verify_default_sizes.py --only coatnet swin

Writes benchmarks/results/verify_default_sizes.json; exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from medclass.models import get_spec, list_models
from medclass.models.checks import verify_model

TIMM = [
    "timm/convnextv2_tiny", "timm/tf_efficientnetv2_s", "timm/regnety_004", "timm/resnet18",
    "timm/resnet50", "timm/densenet121", "timm/vit_base_patch16_224", "timm/coatnet_0_rw_224",
    "timm/swinv2_tiny_window8_256", "timm/maxvit_tiny_tf_224",
]
OUT = Path(__file__).parent / "results" / "verify_default_sizes.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", help="names to check (default: all)")
    args = ap.parse_args()
    names = args.only or [*list_models(), *TIMM]
    rows = []
    for name in names:
        for size in sorted({32, get_spec(name).default_size}):
            row = verify_model(name, image_size=size, in_chans=3, num_classes=3,
                               batch_size=2, latency_runs=3)
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {"machine": f"{platform.processor() or platform.machine()}, "
                         f"{torch.get_num_threads()} threads, torch {torch.__version__}",
              "rows": rows, "n_failed": sum(not r["ok"] for r in rows)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["n_failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
