"""Pure helpers of the benchmark scripts (the scripts themselves run the real pipeline)."""

import shutil
import sys
from pathlib import Path

import yaml

from medclass import recipes

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _medmnist  # noqa: E402
import augment_speed  # noqa: E402
import medmnist  # noqa: E402
import medmnist_select  # noqa: E402


def test_every_selection_variant_is_a_valid_recipe(tmp_path):
    for name, overrides in medmnist_select.VARIANTS.items():
        recipe = _medmnist.write_recipe(tmp_path / f"{name}.yaml", _medmnist.GENERAL, overrides)
        params = tmp_path / f"{name}_params.yaml"
        shutil.copy(BENCH.parent / "params.yaml", params)
        recipes.apply(recipes.load_recipe(recipe), params)  # known keys, valid values
        merged = yaml.safe_load(recipe.read_text())
        assert merged["model"] == "small_resnet"  # the base recipe is kept under the overrides
        for key, value in recipes.flatten(overrides):
            node = merged
            for part in key.split("."):
                node = node[part]
            assert node == value, (name, key)


def _run(seed: int, acc: float, auc: float) -> dict:
    block = {"accuracy": acc, "auc": auc}
    return {"seed": seed, "wall_s": 100.0 + seed, "plan": {"epochs": 3}, "stages_run": [],
            "kfold": {"test_ensemble": {"mean": block}, "val": {"mean": block, "std": block},
                      "folds": 5, "n_test": 10},
            "test": {"accuracy": acc - 0.01, "auc": auc - 0.01}}


def test_selection_keeps_no_test_figures():
    row = medmnist_select.cross_validation(_run(0, 0.9, 0.95))
    assert "test" not in repr(sorted(row)) and "test_ensemble" not in repr(row)


def test_benchmark_rows_carry_mean_and_std_over_seeds():
    row = medmnist.summarise("breastmnist", [_run(0, 0.8, 0.90), _run(1, 0.9, 0.94),
                                              _run(2, 1.0, 0.92)])
    assert row["seeds"] == [0, 1, 2] and row["test_acc"] == [0.8, 0.9, 1.0]
    assert abs(row["test_acc_mean"] - 0.9) < 1e-12 and abs(row["test_acc_std"] - 0.1) < 1e-12
    assert abs(row["test_auc_mean"] - 0.92) < 1e-12 and abs(row["test_auc_std"] - 0.02) < 1e-12
    assert row["max_wall_s"] == 102.0 and row["beats_automl_vision"] is True
    for key in ("recipe", "seeds", "test_acc", "test_auc", "test_acc_mean", "test_auc_mean",
                "test_acc_std", "test_auc_std", "wall_s", "plan", "machine"):
        assert key in row
    assert row["recipe"]["file"] == "configs/medmnist-cpu.yaml"
    table = medmnist.markdown({"breastmnist": row})
    assert "0.900 ± 0.100 / 0.920 ± 0.020" in table and "Google AutoML Vision" in table


def test_augment_speed_times_every_setting():
    for name, spec in augment_speed.SETTINGS.items():
        ips = augment_speed.time_setting(spec(16), 16, batch=4, repeats=1)
        assert ips > 0, name
    sizes = augment_speed.SETTINGS["multiscale (0.86/1/1.14 x side)"](28).multiscale
    assert sizes == (24, 28, 32)
