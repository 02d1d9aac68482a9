"""Budget-aware planning (medclass.plan): the policy scales from 500 to 100k images and never
plans past the budget; `medclass recipe plan` measures a real run and writes params DVC uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medclass import plan, recipes
from medclass.config import load_params
from medclass.errors import MedclassError

REPO = Path(__file__).resolve().parents[1]
SPEED = plan.Speed(train_img_s=900.0, eval_img_s=4000.0)  # small_resnet, 28 px, 2 cores


def sizes(n_train: int) -> plan.Sizes:
    return plan.Sizes(n_train, max(n_train // 9, 10), max(n_train // 8, 10))


def test_epochs_shrink_as_the_dataset_grows():
    assert plan.target_epochs(250) == plan.EPOCH_RANGE[1]
    assert plan.target_epochs(4708) == 8  # 30k / 4708 = 6.4, raised to the minimum
    assert plan.target_epochs(546) == 55
    assert plan.target_epochs(100_000) == plan.EPOCH_RANGE[0]
    assert [plan.target_epochs(n) for n in (500, 2000, 8000, 30_000)] == sorted(
        (plan.target_epochs(n) for n in (500, 2000, 8000, 30_000)), reverse=True)


@pytest.mark.parametrize(("n_train", "budget"), [
    (500, 10), (500, 30), (1_200, 10), (4_708, 10), (4_708, 30), (20_000, 10), (20_000, 30),
    (100_000, 30), (100_000, 60)])
def test_plans_fit_the_budget_from_500_to_100k_images(n_train, budget):
    s = sizes(n_train)
    p = plan.choose(s, SPEED, budget, 1.5, views=2)
    assert 2 <= p.folds <= plan.MAX_FOLDS and 1 <= p.epochs <= plan.EPOCH_RANGE[1]
    assert p.predicted_s <= budget * 60
    assert p.predicted_s == pytest.approx(
        plan.predict_s(s, SPEED, p.epochs, p.folds, 2) * 1.5, abs=0.1)
    # nothing longer or wider would also have fit: the plan uses the budget it was given
    if p.epochs == plan.target_epochs(n_train) and p.folds < plan.MAX_FOLDS:
        assert plan.predict_s(s, SPEED, p.epochs, p.folds + 1, 2) * 1.5 > budget * 60
    if p.epochs < plan.target_epochs(n_train):
        assert p.folds == 2
        assert plan.predict_s(s, SPEED, p.epochs + 1, 2, 2) * 1.5 > budget * 60


def test_small_data_gets_the_full_ensemble_large_data_fewer_epochs():
    small = plan.choose(sizes(280), SPEED, 30, 1.5, views=2)
    large = plan.choose(sizes(100_000), SPEED, 30, 1.5, views=2)
    assert (small.epochs, small.folds) == (plan.EPOCH_RANGE[1], plan.MAX_FOLDS)
    assert large.folds == 2 and large.epochs < plan.EPOCH_RANGE[0]


def test_a_bigger_budget_never_plans_less_training():
    s = sizes(50_000)
    work = [(p.epochs * p.folds) for p in (plan.choose(s, SPEED, b, 1.5, 2)
                                           for b in (15, 20, 40, 80))]
    assert work == sorted(work)


def test_slowdown_makes_the_plan_smaller():
    s = sizes(100_000)
    assert plan.choose(s, SPEED, 30, 1.5, 2).epochs < plan.choose(s, SPEED, 30, 1.0, 2).epochs


def test_too_small_a_budget_is_refused_with_what_it_needs():
    with pytest.raises(MedclassError, match=r"--budget-min 1 is too small .* need [0-9.]+ min"):
        plan.choose(sizes(100_000), SPEED, 1, 1.5, views=2)


def test_the_plan_and_its_record_apply_to_params_yaml(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_bytes((REPO / "params.yaml").read_bytes())
    s = sizes(4708)
    p = plan.choose(s, SPEED, 30, 1.5, views=2)
    recipes.apply({**p.overrides(), "plan": plan.record(p, s, SPEED, 1.5, "cpu X")}, params)
    got = load_params(params)
    assert got.finetune.epochs == got.kfold.epochs == got.kfold.patience == p.epochs
    assert got.kfold.folds == p.folds
    assert got.plan.budget_min == 30 and got.plan.measured.n_train == 4708
    assert got.plan.measured.predicted_min == pytest.approx(p.predicted_s / 60, abs=0.01)


def test_the_general_recipe_leaves_only_the_dataset_to_the_user():
    recipe = recipes.load_recipe(REPO / "configs" / "medmnist-cpu.yaml")
    assert "path" not in recipe["data"] and "class_names" not in recipe["data"]
    assert recipe["data"]["source"] == "npz" and recipe["data"]["image_size"] == 28


@pytest.mark.e2e
def test_recipe_plan_measures_and_writes_a_plan_dvc_runs(tmp_path):
    """The real command in a git+DVC copy: `dvc repro split`, the speed probe through the
    launcher, params written; then `dvc repro kfold` trains the planned ensemble and records
    the plan in metrics/kfold.json."""
    from e2e_tools import copy_repo, run

    proj = copy_repo(tmp_path / "proj", {
        "data": {"image_size": 16, "synthetic": {"classes": ["a", "b"], "images_per_class": 40,
                                                 "size": 24}},
        "train": {"progress": False}, "verify": {"models": ["simple_cnn_tiny"]}})
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({"model": "simple_cnn_tiny", "head": {"mode": "skip"},
                                      "train": {"batch_size": 8, "eval_batch_size": 16},
                                      "kfold": {"head_epochs": 0}}))
    out = run(proj, "medclass", "recipe", "plan", str(recipe), "--budget-min", "2",
              "--slowdown", "1")
    assert "epochs" in out.stdout and "-fold ensemble" in out.stdout, out.stdout
    got = load_params(proj / "params.yaml")
    m = got.plan.measured
    assert m.n_train and m.n_val and m.n_test and m.train_img_s > 0 and m.eval_img_s > 0
    assert got.plan.budget_min == 2 and got.plan.slowdown == 1
    assert got.finetune.epochs == got.kfold.epochs and 2 <= got.kfold.folds <= plan.MAX_FOLDS
    assert m.predicted_min <= 2
    run(proj, "dvc", "repro", "kfold")
    kfold = json.loads((proj / "metrics" / "kfold.json").read_text())
    assert kfold["folds"] == got.kfold.folds
    assert kfold["plan"]["measured"]["n_train"] == m.n_train
