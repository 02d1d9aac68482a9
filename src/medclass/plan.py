"""Budget-aware planning: the epochs, folds and ensemble size that fit a time budget.

``medclass recipe plan NAME --budget-min 30`` applies a recipe, measures how fast this machine
trains and scores the recipe's model (``medclass.plan_probe``, through the stage launcher so
``repro`` pins apply), reads the dataset's size from the split stage, and writes the chosen
``finetune.epochs``, ``kfold.folds`` and ``kfold.epochs`` (the fold ensemble's size) into
params.yaml with the measured inputs under ``plan``. Afterwards everything is deterministic:
the plan is plain params, and ``dvc repro`` trains exactly what they say.

The time model of a whole ``dvc repro`` (every stage) is fixed stage costs plus images trained
and images scored at the measured rates; ``slowdown`` scales it to the slowest 2-core machine
the plan must fit (1 plans for this machine; docs/medmnist.md gives the ratio measured between
our machines).
Policy: each model sees about ``SAMPLES_PER_MODEL`` training images (many epochs on 500
images, few on 100k, within ``EPOCH_RANGE``); then as many folds as fit, up to ``MAX_FOLDS``;
with not even two folds at that length, fewer epochs.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from medclass.errors import MedclassError

# Images one model trains on: 60 epochs of a BreastMNIST fold (60 and 100 epochs scored the same
# fold-validation AUC there, benchmarks/results/medmnist_select_breast.json), 8 of PneumoniaMNIST.
SAMPLES_PER_MODEL = 30_000
EPOCH_RANGE = (8, 100)  # the per-model epochs the policy aims for (fewer only to fit)
MAX_FOLDS = 5
# The non-training work of one ``dvc repro``: FIXED_S for eight process starts, verify, the
# report and export (about 60 s when the stages of a PneumoniaMNIST run were timed one by one
# on our Xeon); PER_IMAGE_S for ingest, hashing, split and evaluation (prepare + split took
# 1.06 ms per 64 px image at 100k images, benchmarks/results/ingest_scale.json). How well the
# whole model predicts: ``plan`` against ``wall_s`` per run in benchmarks/results/medmnist.json.
FIXED_S = 60.0
PER_IMAGE_S = 0.0015
TTA_VIEWS = {"none": 1, "flip": 2, "flip_rot": 6}  # views scored per test image


@dataclass(frozen=True)
class Sizes:
    """Images per split (from the split stage's ``stats.json``)."""

    n_train: int
    n_val: int
    n_test: int


@dataclass(frozen=True)
class Speed:
    """Measured rates on this machine: training and scoring images per second."""

    train_img_s: float
    eval_img_s: float


@dataclass(frozen=True)
class Plan:
    """What the planner chose and the time it predicts (seconds on the slowest machine)."""

    epochs: int
    folds: int
    predicted_s: float
    budget_s: float

    def overrides(self) -> dict[str, Any]:
        """The params it sets (no early stopping: the budget holds for the full length)."""
        e = self.epochs
        return {"finetune": {"epochs": e, "patience": e},
                "kfold": {"folds": self.folds, "epochs": e, "patience": e}}


def predict_s(sizes: Sizes, speed: Speed, epochs: int, folds: int, views: int) -> float:
    """Seconds of a whole ``dvc repro`` on this machine: finetune on train, ``folds`` models on
    (folds-1)/folds of train+val, validation every epoch, test and fold scoring with ``views``
    TTA views, plus the fixed stage costs."""
    n_tv = sizes.n_train + sizes.n_val
    trained = epochs * (sizes.n_train + (folds - 1) * n_tv)
    scored = epochs * (sizes.n_val + n_tv) + views * ((folds + 1) * sizes.n_test + n_tv
                                                      + sizes.n_val)
    fixed = FIXED_S + PER_IMAGE_S * (n_tv + sizes.n_test)
    return fixed + trained / speed.train_img_s + scored / speed.eval_img_s


def target_epochs(n_train: int) -> int:
    """Epochs for about ``SAMPLES_PER_MODEL`` training images, within ``EPOCH_RANGE``."""
    low, high = EPOCH_RANGE
    return min(high, max(low, math.ceil(SAMPLES_PER_MODEL / max(n_train, 1))))


def choose(sizes: Sizes, speed: Speed, budget_min: float, slowdown: float, views: int) -> Plan:
    """The longest-trained, then widest, ensemble whose predicted time x ``slowdown`` fits."""
    budget_s = budget_min * 60.0

    def fits(e: int, k: int) -> Plan | None:
        t = predict_s(sizes, speed, e, k, views) * slowdown
        return Plan(e, k, round(t, 1), budget_s) if t <= budget_s else None

    target = target_epochs(sizes.n_train)
    for k in range(MAX_FOLDS, 1, -1):
        if plan := fits(target, k):
            return plan
    for e in range(target - 1, 0, -1):
        if plan := fits(e, 2):
            return plan
    need = predict_s(sizes, speed, 1, 2, views) * slowdown / 60.0
    raise MedclassError(f"--budget-min {budget_min:g} is too small for {sizes.n_train} training "
                        f"images: one epoch and two folds need {need:.1f} min here "
                        f"(x{slowdown:g} slowdown); raise the budget")


def record(plan: Plan, sizes: Sizes, speed: Speed, slowdown: float, machine: str) -> dict:
    """The ``plan`` params group: the budget, the measured inputs and the prediction."""
    return {"budget_min": round(plan.budget_s / 60.0, 3), "slowdown": slowdown,
            "measured": {**asdict(sizes), "train_img_s": round(speed.train_img_s, 1),
                         "eval_img_s": round(speed.eval_img_s, 1), "machine": machine,
                         "predicted_min": round(plan.predicted_s / 60.0, 2)}}


def probe(params_path: Path) -> dict[str, Any]:
    """``medclass.plan_probe`` run through the stage launcher (repro pins) in the params'
    folder; its JSON."""
    from medclass.io import read_json
    from medclass.plan_probe import OUT_ENV

    with tempfile.TemporaryDirectory(prefix="medclass_plan_") as tmp:
        out = Path(tmp) / "probe.json"
        cmd = [sys.executable, "-m", "medclass.launch", "medclass.plan_probe"]
        proc = subprocess.run(cmd, cwd=params_path.parent, env={**os.environ, OUT_ENV: str(out)},
                              check=False)
        if proc.returncode != 0 or not out.is_file():
            raise MedclassError(f"the speed probe failed (exit {proc.returncode}); its error "
                                "line is above")
        return read_json(out)


def make_plan(recipe: str, budget_min: float, slowdown: float,
              params_path: Path = Path("params.yaml")) -> tuple[Plan, dict[str, Any]]:
    """Apply ``recipe``, bring the split up to date (``dvc repro split``), measure, choose,
    and write the plan into ``params_path``; returns the plan and its ``plan`` group."""
    from medclass import recipes
    from medclass.config import parse_params

    if budget_min <= 0 or slowdown < 1:
        raise MedclassError("--budget-min must be > 0 and --slowdown >= 1")
    recipes.apply(recipes.load_recipe(recipes.find_recipe(recipe)), params_path)
    split = subprocess.run([sys.executable, "-m", "dvc", "repro", "split"],
                           cwd=params_path.parent, check=False)
    if split.returncode != 0:
        raise MedclassError(f"`dvc repro split` failed (exit {split.returncode}); fix the "
                            "data error above, then plan again")
    m = probe(params_path)
    sizes = Sizes(int(m["n_train"]), int(m["n_val"]), int(m["n_test"]))
    speed = Speed(float(m["train_img_s"]), float(m["eval_img_s"]))
    params = parse_params(yaml.safe_load(params_path.read_text(encoding="utf-8")),
                          str(params_path))
    views = TTA_VIEWS[params.evaluate.tta]
    plan = choose(sizes, speed, budget_min, slowdown, views)
    group = record(plan, sizes, speed, slowdown, str(m["machine"]))
    recipes.apply({**plan.overrides(), "plan": group}, params_path)
    return plan, group
