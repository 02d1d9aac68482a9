"""Choose the general MedMNIST recipe on cross-validation only (never the test split).

Each variant is ``configs/medmnist-cpu.yaml`` plus a few overrides, planned for the same
budget as the benchmark (``medclass recipe plan --budget-min 30``: the planner, not a cost
rule, keeps every variant within budget, trading epochs and folds for costlier settings) and
run as ``dvc repro kfold`` on every dataset with seed 0. Only the cross-validation block of
``metrics/kfold.json`` (``val``: mean and std over the folds of each fold's best validation
epoch) is kept; the test blocks are dropped unread. The criterion is the mean over datasets of
the mean fold-validation AUC (ties: ACC). The winner becomes the recipe; ``medmnist.py`` then
scores the test split.

Repeat (repo root, venv active; about 9 minutes per variant on 2 cores):

    python benchmarks/medmnist_select.py --data-dir ../shared/data
    python benchmarks/medmnist_select.py --data-dir ../shared/data --only base --only light
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe, write_results  # noqa: E402
from _medmnist import CLASS_NAMES, GENERAL, planned_run, write_recipe  # noqa: E402
from _workspace import REPO  # noqa: E402

from medclass.io import read_json  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "medmnist_select.json"
BUDGET_MIN, SLOWDOWN, SEED = 30.0, 5.5, 0  # as medmnist.py
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "light": {"train": {"augment": "light"}, "evaluate": {"tta": "none"}},
    "light_flip": {"train": {"augment": "light", "aug": {"hflip": 0.5}}},
    "no_ema": {"train": {"ema_decay": None}},
    "balanced": {"train": {"class_weights": "balanced"}},
    "mixup": {"train": {"mixup": {"mixup_alpha": 0.2}}},
    "upsample56": {"data": {"image_size": 56}},
}


def cross_validation(run: dict[str, Any]) -> dict[str, Any]:
    """The run's fold-validation figures and plan; its test blocks are not kept."""
    kf = run["kfold"]
    return {"val_mean": kf["val"]["mean"], "val_std": kf["val"]["std"], "folds": kf["folds"],
            "plan": run["plan"], "wall_s": run["wall_s"]}


def run_variant(name: str, data_dir: Path, workdir: Path) -> dict[str, Any]:
    """One variant on every dataset; its cross-validation rows and the criterion."""
    recipe = write_recipe(workdir / f"{name}.yaml", GENERAL, VARIANTS[name])
    rows = {}
    for ds in CLASS_NAMES:
        run = planned_run(workdir / f"{name}_{ds}", data_dir / f"{ds}.npz", recipe, seed=SEED,
                          budget_min=BUDGET_MIN, slowdown=SLOWDOWN, target="kfold")
        rows[ds] = cross_validation(run)
        del run  # the test blocks go unread
        v = rows[ds]["val_mean"]
        print(f"{name} {ds}: fold-validation AUC {v['auc']:.4f}, ACC {v['accuracy']:.4f}",
              file=sys.stderr, flush=True)
    return {"overrides": VARIANTS[name], "datasets": rows,
            "val_auc": statistics.fmean(r["val_mean"]["auc"] for r in rows.values()),
            "val_acc": statistics.fmean(r["val_mean"]["accuracy"] for r in rows.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--only", choices=sorted(VARIANTS), action="append",
                    help="run only this variant (repeatable)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    missing = [n for n in CLASS_NAMES if not (args.data_dir / f"{n}.npz").is_file()]
    if missing:
        sys.exit(f"error: {missing} not found in {args.data_dir}; pass --data-dir with the "
                 "official MedMNIST files")
    variants = dict(read_json(args.out).get("variants", {})) if args.out.is_file() else {}
    workdir = Path(tempfile.mkdtemp(prefix="medmnist_select_"))
    try:
        for name in args.only or list(VARIANTS):
            variants[name] = run_variant(name, args.data_dir, workdir)
            best = max(variants, key=lambda n: (variants[n]["val_auc"], variants[n]["val_acc"]))
            write_results(args.out, {
                "base_recipe": f"configs/{GENERAL}.yaml", "seed": SEED,
                "budget_min": BUDGET_MIN, "slowdown": SLOWDOWN,
                "criterion": "mean over datasets of the mean fold-validation AUC (then ACC)",
                "variants": variants, "best": best, "machine": describe()})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"best by fold-validation AUC: {best}", file=sys.stderr)


if __name__ == "__main__":
    main()
