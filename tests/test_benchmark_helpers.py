"""Pure helpers of the benchmark scripts (the scripts themselves run the real pipeline)."""

import sys
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import augment_speed  # noqa: E402
import medmnist_select  # noqa: E402


def test_variant_cost_and_eligibility_follow_folds_times_epochs():
    base = yaml.safe_load((BENCH.parent / "configs" / "breastmnist.yaml").read_text())
    folds, epochs = base["kfold"]["folds"], base["kfold"]["epochs"]
    cost = medmnist_select.relative_cost
    assert cost({}, base) == 1.0
    assert cost({"train": {"augment": "strong"}}, base) == 1.0
    assert cost({"kfold": {"folds": 2 * folds}}, base) == 2.0
    assert cost({"kfold": {"epochs": epochs // 2}}, base) == 0.5
    assert cost({"kfold": {"folds": 2 * folds}}, base) > medmnist_select.COST_LIMIT
    # every variant names only known params (checked by the same validation as recipe apply)
    from medclass.config import Params

    params = yaml.safe_load((BENCH.parent / "params.yaml").read_text())
    for overrides in medmnist_select.VARIANTS.values():
        merged = _merge(_merge(params, base), overrides)
        Params.model_validate(merged)


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return out


def test_augment_speed_times_every_setting():
    for name, spec in augment_speed.SETTINGS.items():
        ips = augment_speed.time_setting(spec(16), 16, batch=4, repeats=1)
        assert ips > 0, name
    sizes = augment_speed.SETTINGS["multiscale (0.86/1/1.14 x side)"](28).multiscale
    assert sizes == (24, 28, 32)
