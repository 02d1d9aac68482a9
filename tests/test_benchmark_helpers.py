"""Pure helpers of the benchmark scripts (the scripts themselves run the real pipeline)."""

import shutil
import sys
from pathlib import Path

import yaml

from medclass import recipes

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import augment_speed  # noqa: E402
import medmnist_select  # noqa: E402


def test_variant_cost_and_eligibility_follow_folds_times_epochs(tmp_path):
    base = yaml.safe_load((BENCH.parent / "configs" / "breastmnist.yaml").read_text())
    folds, epochs = base["kfold"]["folds"], base["kfold"]["epochs"]
    cost = medmnist_select.relative_cost
    assert cost({}, base) == 1.0
    assert cost({"train": {"augment": "strong"}}, base) == 1.0
    assert cost({"kfold": {"folds": 2 * folds}}, base) == 2.0
    assert cost({"kfold": {"epochs": epochs // 2}}, base) == 0.5
    assert cost({"kfold": {"folds": 2 * folds}}, base) > medmnist_select.COST_LIMIT
    # every variant applies cleanly on top of the recipe (known keys, valid values)
    for name, overrides in medmnist_select.VARIANTS.items():
        params = tmp_path / f"{name}.yaml"
        shutil.copy(BENCH.parent / "params.yaml", params)
        recipes.apply(base, params)
        recipes.apply(overrides, params)


def test_augment_speed_times_every_setting():
    for name, spec in augment_speed.SETTINGS.items():
        ips = augment_speed.time_setting(spec(16), 16, batch=4, repeats=1)
        assert ips > 0, name
    sizes = augment_speed.SETTINGS["multiscale (0.86/1/1.14 x side)"](28).multiscale
    assert sizes == (24, 28, 32)
