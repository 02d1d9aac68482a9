"""The general MedMNIST recipe, planned for a time budget, over 3 seeds, against the published rows.

For each dataset and seed, ``_medmnist.planned_run`` makes a fresh git+DVC copy of this
checkout, sets only ``data.path``, ``data.class_names`` and ``seed``, runs ``medclass recipe
plan medmnist-cpu --budget-min 30`` (``dvc repro split`` plus the speed probe; it writes the
epochs and folds) and then the whole ``dvc repro``. ``wall_s`` is both together: every stage.
The headline score is the mean-probability ensemble of the k-fold models on the test split
(``metrics/kfold.json`` ``test_ensemble.mean``), scored once per run; the single
finetuned model (``metrics/test.json``) is recorded beside it. The recipe was chosen on
cross-validation only (``benchmarks/medmnist_select.py``). Binary AUC is the positive-class
ROC AUC, as in the MedMNIST papers.

Repeat (repo root, venv active; the official npz files, e.g. ``../shared/data/`` or
https://zenodo.org/records/10519652; about 40 minutes on 2 cores):

    python benchmarks/medmnist.py --data-dir ../shared/data            # both, seeds 0 1 2
    python benchmarks/medmnist.py --data-dir ../shared/data --only breastmnist --seeds 0
    python benchmarks/medmnist.py --markdown                           # README table
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
from _medmnist import (  # noqa: E402
    CLASS_NAMES,
    GENERAL,
    MEDMNIST_PLUS,
    TARGET,
    V2,
    planned_run,
)
from _workspace import REPO  # noqa: E402

from medclass.io import read_json  # noqa: E402
from medclass.recipes import describe as describe_recipe  # noqa: E402
from medclass.recipes import load_recipe  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "medmnist.json"
BUDGET_MIN, SLOWDOWN = 30.0, 5.5  # AMD EPYC vs this Intel Xeon: docs/medmnist.md


def summarise(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The dataset's row: per-seed scores, their mean and std, the plans and wall times."""
    acc = [r["kfold"]["test_ensemble"]["mean"]["accuracy"] for r in runs]
    auc = [r["kfold"]["test_ensemble"]["mean"]["auc"] for r in runs]
    path = REPO / "configs" / f"{GENERAL}.yaml"

    def std(v: list[float]) -> float:
        return statistics.stdev(v) if len(v) > 1 else 0.0

    row = {
        "recipe": {"file": f"configs/{GENERAL}.yaml", "about": describe_recipe(path),
                   "settings": load_recipe(path), "budget_min": BUDGET_MIN,
                   "slowdown": SLOWDOWN, "scored": "kfold test_ensemble.mean"},
        "seeds": [r["seed"] for r in runs], "test_acc": acc, "test_auc": auc,
        "test_acc_mean": statistics.fmean(acc), "test_auc_mean": statistics.fmean(auc),
        "test_acc_std": std(acc), "test_auc_std": std(auc),
        "single_model_test": [{"accuracy": r["test"]["accuracy"], "auc": r["test"]["auc"]}
                              for r in runs if r["test"]],
        "cv_val_auc_mean": [r["kfold"]["val"]["mean"]["auc"] for r in runs],
        "n_test": runs[0]["kfold"]["n_test"],
        "wall_s": [r["wall_s"] for r in runs], "max_wall_s": max(r["wall_s"] for r in runs),
        "plan": [r["plan"] for r in runs], "stages_run": runs[0]["stages_run"],
        "machine": describe(),
    }
    ref = V2[TARGET][name]
    row["beats_automl_vision"] = row["test_acc_mean"] > ref[0] and row["test_auc_mean"] > ref[1]
    return row


def markdown(results: dict[str, Any]) -> str:
    """The README table: published rows, then ours (mean ± std over seeds)."""
    names = [n for n in CLASS_NAMES if n in results]
    lines = ["| method | " + " | ".join(f"{n} ACC / AUC" for n in names) + " |",
             "|---" * (len(names) + 1) + "|"]
    for ref, vals in {**V2, **MEDMNIST_PLUS}.items():
        lines.append(f"| {ref} | " + " | ".join(f"{vals[n][0]:.3f} / {vals[n][1]:.3f}"
                                                 for n in names) + " |")
    cells = []
    for n in names:
        r = results[n]
        cells.append(f"**{r['test_acc_mean']:.3f} ± {r['test_acc_std']:.3f} / "
                     f"{r['test_auc_mean']:.3f} ± {r['test_auc_std']:.3f}** "
                     f"(≤ {r['max_wall_s'] / 60:.1f} min)")
    seeds = len(results[names[0]]["seeds"]) if names else 0
    lines.append(f"| medclass `{GENERAL}`, {seeds} seeds | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--only", choices=sorted(CLASS_NAMES), action="append")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--markdown", action="store_true", help="print the table from --out")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(read_json(args.out)))
        return
    names = args.only or list(CLASS_NAMES)
    missing = [n for n in names if not (args.data_dir / f"{n}.npz").is_file()]
    if missing:
        sys.exit(f"error: {', '.join(f'{n}.npz' for n in missing)} not found in "
                 f"{args.data_dir}; pass --data-dir with the official MedMNIST files")
    results = read_json(args.out) if args.out.is_file() else {}
    workdir = Path(tempfile.mkdtemp(prefix="medmnist_"))
    recipe = REPO / "configs" / f"{GENERAL}.yaml"
    try:
        for name in names:
            runs = [planned_run(workdir / f"{name}_{s}", args.data_dir / f"{name}.npz", recipe,
                                seed=s, budget_min=BUDGET_MIN, slowdown=SLOWDOWN)
                    for s in args.seeds]
            results[name] = summarise(name, runs)
            r = results[name]
            print(f"{name}: test ACC {r['test_acc_mean']:.3f} ± {r['test_acc_std']:.3f}, AUC "
                  f"{r['test_auc_mean']:.3f} ± {r['test_auc_std']:.3f}; max "
                  f"{r['max_wall_s'] / 60:.1f} min", file=sys.stderr, flush=True)
            write_results(args.out, {**results, "published": {
                k: {n: list(v) for n, v in r.items()} for k, r in {**V2, **MEDMNIST_PLUS}.items()}})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(markdown(results))


if __name__ == "__main__":
    main()
