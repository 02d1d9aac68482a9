"""Shared parts of the MedMNIST benchmarks: the datasets, the published rows, and one planned
run of a recipe in a fresh git+DVC copy of this checkout (``medclass recipe plan``, then DVC).

A run: copy the checkout (``_workspace``), put the official ``.npz`` in ``data/external/``,
set ``data.path``, ``data.class_names`` and ``seed`` (the only per-dataset settings), commit,
then ``medclass recipe plan RECIPE --budget-min B`` (it runs ``dvc repro split`` and the speed
probe) and ``dvc repro TARGET``. ``wall_s`` is the plan plus the ``dvc repro``: every stage.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import yaml
from _workspace import copy_repo, make_env, stages_run, timed

from medclass.io import read_json
from medclass.recipes import apply

GENERAL = "medmnist-cpu"  # configs/medmnist-cpu.yaml: the general recipe
CLASS_NAMES = {"pneumoniamnist": ["normal", "pneumonia"],
               "breastmnist": ["malignant", "normal_benign"]}
# test (ACC, AUC). MedMNIST v2: Yang et al., Scientific Data 10:41 (2023), Table 4.
V2: dict[str, dict[str, tuple[float, float]]] = {
    "ResNet-18 (28)": {"pneumoniamnist": (0.854, 0.944), "breastmnist": (0.863, 0.901)},
    "ResNet-18 (224)": {"pneumoniamnist": (0.864, 0.956), "breastmnist": (0.833, 0.891)},
    "ResNet-50 (28)": {"pneumoniamnist": (0.854, 0.948), "breastmnist": (0.812, 0.857)},
    "ResNet-50 (224)": {"pneumoniamnist": (0.884, 0.962), "breastmnist": (0.842, 0.866)},
    "auto-sklearn": {"pneumoniamnist": (0.855, 0.942), "breastmnist": (0.803, 0.836)},
    "AutoKeras": {"pneumoniamnist": (0.878, 0.947), "breastmnist": (0.831, 0.871)},
    "Google AutoML Vision": {"pneumoniamnist": (0.946, 0.991), "breastmnist": (0.861, 0.919)},
}
# MedMNIST+ (Doerrich et al. 2024, ImageNet/DINO-pretrained backbones, 28 px images
# zero-padded to 224): the best test ACC / AUC at 28 px, as issue 21 quotes them.
MEDMNIST_PLUS = {"MedMNIST+ best at 28 px": {"pneumoniamnist": (0.866, 0.973),
                                              "breastmnist": (0.865, 0.891)}}
TARGET = "Google AutoML Vision"


def write_recipe(path: Path, base: str, overrides: dict[str, Any]) -> Path:
    """``configs/<base>.yaml`` with ``overrides`` merged in, as a recipe file at ``path``."""
    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return {**a, **{k: merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict)
                        else v for k, v in b.items()}}

    from _workspace import REPO

    recipe = yaml.safe_load((REPO / "configs" / f"{base}.yaml").read_text(encoding="utf-8"))
    path.write_text(yaml.safe_dump(merge(recipe, overrides), sort_keys=False), encoding="utf-8")
    return path


def planned_run(ws: Path, npz: Path, recipe: Path, *, seed: int, budget_min: float,
                slowdown: float, target: str | None = None) -> dict[str, Any]:
    """Plan and run ``recipe`` on ``npz`` in a fresh copy at ``ws``; the run's facts."""
    name = npz.stem
    ws.mkdir(parents=True)
    env = make_env(ws)
    copy_repo(ws)
    (ws / "data" / "external").mkdir(parents=True, exist_ok=True)
    shutil.copy2(npz, ws / "data" / "external" / npz.name)
    apply({"seed": seed, "data": {"path": f"data/external/{npz.name}",
                                  "class_names": CLASS_NAMES[name]}}, ws / "params.yaml")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        timed(ws, env, *cmd)
    print(f"{name} seed {seed}: medclass recipe plan {recipe.name} --budget-min {budget_min:g}",
          file=sys.stderr, flush=True)
    plan_s, plan_out = timed(ws, env, sys.executable, "-m", "medclass.cli", "recipe", "plan",
                             str(recipe), "--budget-min", str(budget_min),
                             "--slowdown", str(slowdown))
    repro_s, out = timed(ws, env, "dvc", "repro", *([target] if target else []))
    params = yaml.safe_load((ws / "params.yaml").read_text(encoding="utf-8"))
    return {"seed": seed, "wall_s": round(plan_s + repro_s, 1), "plan_s": round(plan_s, 1),
            "repro_s": round(repro_s, 1), "stages_run": stages_run(plan_out + out),
            "plan": {**params["plan"], "epochs": params["kfold"]["epochs"],
                     "folds": params["kfold"]["folds"]},
            "kfold": read_json(ws / "metrics" / "kfold.json"),
            "test": read_json(ws / "metrics" / "test.json")
            if (ws / "metrics" / "test.json").is_file() else None}
