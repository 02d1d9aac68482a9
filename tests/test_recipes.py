"""Recipes in configs/: valid params, dvc -S args equal to `recipe apply`, CLI."""

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from medclass import recipes
from medclass.cli import app
from medclass.config import load_params
from medclass.errors import MedclassError

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "configs").glob("*.yaml"))


def test_there_are_recipes():
    names = {p.stem for p in RECIPES}
    assert {"medmnist28", "pneumoniamnist", "breastmnist"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_applies_and_equals_dvc_set_params(path, tmp_path):
    """`medclass recipe apply` and `dvc exp run -S` (DVC's own override code) agree."""
    from dvc.utils.hydra import apply_overrides

    ours, theirs = tmp_path / "ours.yaml", tmp_path / "theirs.yaml"
    shutil.copy(REPO / "params.yaml", ours)
    shutil.copy(REPO / "params.yaml", theirs)
    recipe = recipes.load_recipe(path)
    changed = recipes.apply(recipe, ours)
    apply_overrides(theirs, recipes.set_args(recipe))
    assert yaml.safe_load(ours.read_text()) == yaml.safe_load(theirs.read_text())
    params = load_params(ours)  # the result validates
    assert len(changed) == len(recipes.flatten(recipe)) > 0
    for key, value in recipes.flatten(recipe):
        node = params.model_dump(mode="json")
        for part in key.split("."):
            node = node[part]
        assert node == value, key
    assert recipes.describe(path)  # every recipe says what it is in its leading comment
    assert "# backbone:" in ours.read_text()  # params.yaml comments survive


def test_apply_refuses_unknown_keys_and_bad_values_without_writing(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    before = params.read_bytes()
    with pytest.raises(MedclassError, match="train.augmnt"):
        recipes.apply({"train": {"augmnt": "strong"}}, params)
    with pytest.raises(MedclassError, match="augment"):
        recipes.apply({"train": {"augment": "heavy"}}, params)
    assert params.read_bytes() == before


def test_hydra_values_quote_only_when_needed():
    assert recipes.hydra_value("medical") == "medical"
    assert recipes.hydra_value("data/external/x.npz") == "data/external/x.npz"
    assert recipes.hydra_value("null") == "'null'"  # a string, not None
    assert recipes.hydra_value("a b") == "'a b'"
    assert recipes.hydra_value([0.5, 0.75]) == "[0.5,0.75]"
    assert recipes.hydra_value(None) == "null" and recipes.hydra_value(True) == "true"


def test_cli_list_args_apply_and_unknown(tmp_path, monkeypatch):
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    out = runner.invoke(app, ["recipe", "list"])
    assert out.exit_code == 0 and "breastmnist" in out.output
    out = runner.invoke(app, ["recipe", "args", "medmnist28"])
    assert out.exit_code == 0
    assert "-S model=resnet18_cifar" in out.output and "-S finetune.epochs=100" in out.output
    out = runner.invoke(app, ["recipe", "apply", "medmnist28"])
    assert out.exit_code == 0
    assert load_params(tmp_path / "params.yaml").finetune.scheduler == "multistep"
    out = runner.invoke(app, ["recipe", "apply", "nope"])
    assert out.exit_code == 2 and "recipe 'nope' not found" in out.output


BREAST = REPO.parent / "shared" / "data" / "breastmnist.npz"


@pytest.mark.skipif(not BREAST.is_file(), reason="../shared/data/breastmnist.npz not present")
def test_breastmnist_recipe_runs_through_the_stages(tmp_path, monkeypatch):
    """The shipped recipe on the real file, cut to 2 folds x 1 epoch: stages run end to end."""
    import json

    from medclass.stages import evaluate, finetune, head, kfold, prepare, split

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data" / "external").mkdir(parents=True)
    shutil.copy(BREAST, tmp_path / "data" / "external" / "breastmnist.npz")
    monkeypatch.chdir(tmp_path)
    recipes.apply(recipes.load_recipe(REPO / "configs" / "breastmnist.yaml"))
    recipes.apply({"train": {"progress": False}, "finetune": {"epochs": 1},
                   "kfold": {"folds": 2, "epochs": 1},
                   "evaluate": {"bootstrap": 0, "gradcam_per_class": 0, "gallery": 0,
                                "embedding": "none", "report": False}})
    params = load_params()
    for stage in (prepare, split, head, finetune, evaluate, kfold):
        stage.main(params)
    report = json.loads((tmp_path / "metrics" / "split_report.json").read_text())
    assert report["predefined_split"] is True and report["n_images"] == 780  # official split
    test = json.loads((tmp_path / "metrics" / "test.json").read_text())
    assert test["n"] == 156 and 0.0 <= test["auc"] <= 1.0
    kf = json.loads((tmp_path / "metrics" / "kfold.json").read_text())
    assert kf["n_test"] == 156 and kf["n_trainval"] == 624 and kf["tta"] == "flip"
    assert set(kf["test_ensemble"]) == {"mean", "vote"}
