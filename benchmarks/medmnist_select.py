"""Choose between BreastMNIST recipe variants on fold-validation AUC only (never the test split).

Each variant is ``configs/breastmnist.yaml`` plus a few overrides. It runs ``dvc repro kfold``
in a fresh git+DVC copy of this checkout (as ``medmnist.py`` does) and keeps only the
cross-validation figures of ``metrics/kfold.json`` (``val``: the mean and std over the folds
of each fold's best validation epoch); the test-ensemble block of that file is never read,
printed or stored. The chosen variant then becomes the recipe and ``medmnist.py`` scores the
test split once.

Only variants that keep the 30-minute budget on the slowest 2-core machine we have measured are
eligible: the base recipe took 16.5 min there (AMD EPYC, the first ``medmnist.json`` run), so
a variant may cost at most ``COST_LIMIT`` times the base's training (folds × epochs; a variant
that trains on larger images, like ``multiscale``, costs a little more than that says).

Repeat (repo root, venv active; about 4 minutes per variant on the 2-core machine of
``benchmarks/results/medmnist_select.json``):

    python benchmarks/medmnist_select.py --data-dir ../shared/data
    python benchmarks/medmnist_select.py --data-dir ../shared/data --only base --only multiscale
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe, write_results  # noqa: E402
from _workspace import REPO, recipe_workspace, timed  # noqa: E402

from medclass.io import read_json  # noqa: E402
from medclass.recipes import apply  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "medmnist_select.json"
DATASET, RECIPE = "breastmnist", "breastmnist"
COST_LIMIT = 1.8  # x the base recipe's folds x epochs: 16.5 min x 1.8 = 29.7 min
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "multiscale": {"train": {"aug": {"multiscale": [24, 28, 32]}}},
    "mixup": {"train": {"mixup": {"mixup_alpha": 0.2}}},
    "strong": {"train": {"augment": "strong"}},
    "epochs100": {"kfold": {"epochs": 100}},
    "no_smoothing": {"train": {"label_smoothing": 0.0}},
    "folds10": {"kfold": {"folds": 10}},
    "lr1e-3": {"finetune": {"lr": 0.001}},
}


def relative_cost(overrides: dict[str, Any], base: dict[str, Any]) -> float:
    """folds × epochs of the variant over those of the base recipe."""
    def cost(kfold: dict[str, Any]) -> int:
        return int(kfold["folds"]) * int(kfold["epochs"])

    return cost({**base["kfold"], **overrides.get("kfold", {})}) / cost(base["kfold"])


def cross_validation(ws: Path) -> dict[str, Any]:
    """The fold-validation block of kfold.json (mean/std over folds), nothing from test."""
    m = read_json(ws / "metrics" / "kfold.json")
    return {"val_mean": m["val"]["mean"], "val_std": m["val"]["std"], "folds": m["folds"],
            "n_trainval": m["n_trainval"]}


def run_variant(name: str, npz: Path, workdir: Path) -> dict[str, Any]:
    """One variant in a fresh copy of the repository; returns its cross-validation row."""
    ws = workdir / name
    env = recipe_workspace(ws, npz, RECIPE)
    if VARIANTS[name]:
        apply(VARIANTS[name], ws / "params.yaml")
    wall, _ = timed(ws, env, "dvc", "repro", "kfold")
    base = yaml.safe_load((REPO / "configs" / f"{RECIPE}.yaml").read_text(encoding="utf-8"))
    cost = relative_cost(VARIANTS[name], base)
    row = {**cross_validation(ws), "overrides": VARIANTS[name], "wall_s": round(wall, 1),
           "relative_cost": round(cost, 2), "eligible": cost <= COST_LIMIT}
    mean, std = row["val_mean"], row["val_std"]
    print(f"{name}: fold-validation AUC {mean['auc']:.4f} ± {std['auc']:.4f}, ACC "
          f"{mean['accuracy']:.4f} in {wall / 60:.1f} min", file=sys.stderr, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--only", choices=sorted(VARIANTS), action="append",
                    help="run only this variant (repeatable)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    npz = args.data_dir / f"{DATASET}.npz"
    if not npz.is_file():
        sys.exit(f"error: {npz} not found; pass --data-dir with the official MedMNIST file")
    previous = read_json(args.out) if args.out.is_file() else {}
    variants = dict(previous.get("variants", {}))
    workdir = Path(tempfile.mkdtemp(prefix="medmnist_select_"))
    try:
        for name in args.only or list(VARIANTS):
            variants[name] = run_variant(name, npz, workdir)
            eligible = [n for n in variants if variants[n]["eligible"]]
            best = max(eligible, key=lambda n: variants[n]["val_mean"]["auc"], default=None)
            write_results(args.out, {"dataset": DATASET, "base_recipe": f"configs/{RECIPE}.yaml",
                                     "criterion": "kfold val mean AUC among eligible variants",
                                     "cost_limit": COST_LIMIT, "variants": variants,
                                     "best": best, "machine": describe()})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"best by fold-validation AUC: {best}", file=sys.stderr)


if __name__ == "__main__":
    main()
