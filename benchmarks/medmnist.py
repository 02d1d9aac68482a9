"""MedMNIST v2 recipes (configs/) through the real pipeline, side by side with the paper's table.

For each dataset a fresh temp copy of this checkout is made (tracked and untracked-but-not-
ignored files, ``git init`` + commit, as in ``repro_overhead.py``), the official ``.npz`` is
copied to ``data/external/``, ``medclass recipe apply <dataset>`` writes the recipe into its
params.yaml and ``dvc repro <target>`` runs prepare → split → (head, finetune, evaluate) or
(kfold). ``wall_s`` is that ``dvc repro``'s wall time (every stage, including ingest and
split). The test metrics are read from the stage's metrics file: ``metrics/test.json`` for a
single model, ``metrics/kfold.json``'s ``test_ensemble.mean`` for a fold ensemble. Model
selection and any tuning use the validation split only; the test split is scored once at the
end. Binary AUC is the positive-class (label 1) ROC AUC, as in the paper.

Reference rows: MedMNIST v2 (Yang et al., Scientific Data 10:41, 2023), Table 4 / the project
page's benchmark table (test ACC / AUC).

Repeat (repo root, venv active; about 25 minutes on 2 cores; the npz files are the official
ones, e.g. ``../shared/data/`` or https://zenodo.org/records/10519652):

    python benchmarks/medmnist.py --data-dir ../shared/data        # both datasets
    python benchmarks/medmnist.py --data-dir ../shared/data --only breastmnist
    python benchmarks/medmnist.py --markdown                       # README table from the JSON
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _machine, when not run as a script

from _machine import describe, write_results  # noqa: E402
from _workspace import REPO, recipe_workspace, stages_run, timed  # noqa: E402

from medclass.io import read_json  # noqa: E402
from medclass.recipes import describe as describe_recipe  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "medmnist.json"
# dataset -> (recipe in configs/, dvc target, where the test metrics are)
RUNS: dict[str, tuple[str, str, str]] = {
    "pneumoniamnist": ("pneumoniamnist", "evaluate", "test"),
    "breastmnist": ("breastmnist", "kfold", "kfold"),
}
PAPER: dict[str, dict[str, tuple[float, float]]] = {  # test (ACC, AUC)
    "ResNet-18 (28)": {"pneumoniamnist": (0.854, 0.944), "breastmnist": (0.863, 0.901)},
    "ResNet-18 (224)": {"pneumoniamnist": (0.864, 0.956), "breastmnist": (0.833, 0.891)},
    "ResNet-50 (28)": {"pneumoniamnist": (0.854, 0.948), "breastmnist": (0.812, 0.857)},
    "ResNet-50 (224)": {"pneumoniamnist": (0.884, 0.962), "breastmnist": (0.842, 0.866)},
    "auto-sklearn": {"pneumoniamnist": (0.855, 0.942), "breastmnist": (0.803, 0.836)},
    "AutoKeras": {"pneumoniamnist": (0.878, 0.947), "breastmnist": (0.831, 0.871)},
    "Google AutoML Vision": {"pneumoniamnist": (0.946, 0.991), "breastmnist": (0.861, 0.919)},
}
BUDGET_S = 30 * 60


def test_metrics(ws: Path, kind: str) -> dict[str, Any]:
    """ACC/AUC (and n) of the test split from the run's metrics file."""
    if kind == "kfold":
        m = read_json(ws / "metrics" / "kfold.json")
        ens = m["test_ensemble"]["mean"]
        return {"test_acc": ens["accuracy"], "test_auc": ens["auc"], "n_test": m["n_test"],
                "val_acc_folds_mean": m["val"]["mean"]["accuracy"],
                "val_auc_folds_mean": m["val"]["mean"]["auc"], "tta": m.get("tta")}
    m = read_json(ws / "metrics" / "test.json")
    ft = read_json(ws / "metrics" / "finetune.json")
    return {"test_acc": m["accuracy"], "test_auc": m["auc"], "n_test": m["n"],
            "best_val_acc": ft.get("best_val_acc"), "best_val_auc": ft.get("best_val_auc"),
            "best_epoch": ft.get("best_epoch")}


def run_dataset(name: str, npz: Path, workdir: Path) -> dict[str, Any]:
    """One recipe in a fresh copy of the repository; returns its result row."""
    recipe, target, kind = RUNS[name]
    ws = workdir / name
    env = recipe_workspace(ws, npz, recipe)
    print(f"{name}: dvc repro {target} (recipe configs/{recipe}.yaml)", file=sys.stderr,
          flush=True)
    wall, out = timed(ws, env, "dvc", "repro", target)
    path = REPO / "configs" / f"{recipe}.yaml"
    row = {**test_metrics(ws, kind), "wall_s": round(wall, 1),
           "within_30_min": wall <= BUDGET_S, "stages_run": stages_run(out),
           "recipe": {"file": f"configs/{recipe}.yaml", "about": describe_recipe(path),
                      "settings": yaml.safe_load(path.read_text(encoding="utf-8")),
                      "target": target, "result_from": kind}}
    row["machine"] = describe()  # per row: a rerun of one dataset keeps the other's machine
    acc, auc = row["test_acc"], row["test_auc"]
    row["beats"] = {ref: acc > vals[name][0] and auc > vals[name][1]
                    for ref, vals in PAPER.items()}
    print(f"{name}: test ACC {acc:.3f} AUC {auc:.3f} in {wall / 60:.1f} min", file=sys.stderr)
    return row


def markdown(results: dict[str, Any]) -> str:
    """The README table: the paper's rows, then ours."""
    names = [n for n in RUNS if n in results]
    head = "| method | " + " | ".join(f"{n} ACC / AUC" for n in names) + " |"
    lines = [head, "|---" * (len(names) + 1) + "|"]
    for ref, vals in PAPER.items():
        lines.append(f"| {ref} | " + " | ".join(f"{vals[n][0]:.3f} / {vals[n][1]:.3f}"
                                                 for n in names) + " |")
    ours = " | ".join(f"**{results[n]['test_acc']:.3f} / {results[n]['test_auc']:.3f}** "
                      f"({results[n]['wall_s'] / 60:.0f} min)" for n in names)
    lines.append(f"| medclass recipe (this run) | {ours} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data",
                    help="folder with pneumoniamnist.npz and breastmnist.npz")
    ap.add_argument("--only", choices=sorted(RUNS), action="append",
                    help="run only this dataset (repeatable)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--keep", action="store_true", help="keep the temp copies")
    ap.add_argument("--markdown", action="store_true",
                    help="print the README table from --out and exit")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(read_json(args.out)))
        return
    names = args.only or list(RUNS)
    missing = [n for n in names if not (args.data_dir / f"{n}.npz").is_file()]
    if missing:
        sys.exit(f"error: {', '.join(f'{n}.npz' for n in missing)} not found in "
                 f"{args.data_dir}; pass --data-dir with the official MedMNIST files")
    previous = read_json(args.out) if args.out.is_file() else {}
    workdir = Path(tempfile.mkdtemp(prefix="medmnist_"))
    try:
        results = {n: run_dataset(n, args.data_dir / f"{n}.npz", workdir) for n in names}
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    # rows from an earlier run stay, with the machine they ran on (older files: the top-level one)
    kept = {n: {**previous[n], "machine": previous[n].get("machine", previous.get("machine"))}
            for n in RUNS if n in previous and n not in results}
    write_results(args.out, {**kept, **results, "paper": {k: {n: list(v) for n, v in r.items()}
                                                          for k, r in PAPER.items()},
                             "machine": describe()})
    print(markdown({**kept, **results}))


if __name__ == "__main__":
    main()
