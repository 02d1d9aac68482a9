"""The evaluate stage end to end on a tiny tmp project (prepare + split + an untrained model)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from medclass.config import load_params
from medclass.stages import evaluate, prepare, split

TINY = {
    "model": "simple_cnn_tiny",
    "data": {"image_size": 16, "synthetic": {"classes": ["normal", "nodule", "effusion"],
                                             "images_per_class": 12, "size": 24}},
    "train": {"progress": False, "drop_rate": 0.3},
    "evaluate": {"batch_size": 8, "bootstrap": 50, "gradcam_per_class": 1, "gallery": 4},
}


@pytest.fixture(scope="module")
def project(stage_project, untrained_model) -> Path:
    """data/raw, data/split and an untrained models/model.pt in a tmp folder."""
    root = stage_project("evalstage", TINY, [prepare, split])
    untrained_model(root)
    return root


def _run(root: Path, monkeypatch: pytest.MonkeyPatch, **evaluate_over) -> dict:
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["evaluate"] = {**TINY["evaluate"], **evaluate_over}
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(root)
    evaluate.main(load_params())
    return json.loads((root / "metrics/test.json").read_text())


def test_stage_writes_every_output(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = _run(project, monkeypatch)
    out = project / "plots/test"
    for name in ("predictions.csv", "confusion.png", "confusion_normalised.png",
                 "reliability.png", "reliability/before.csv", "reliability/after.csv",
                 "risk_coverage.png", "risk_coverage/confidence.csv",
                 "risk_coverage/entropy.csv", "errors.json", "mistakes.png", "gradcam.png",
                 "embedding.png"):
        assert (out / name).is_file(), name
    assert not (out / "risk_coverage/mutual_info.csv").exists()  # MC dropout is off
    cal = json.loads((project / "models/calibration.json").read_text())
    assert cal["fitted_on"] == "val" and cal["temperature"] > 0
    assert m["calibration"]["temperature"] == cal["temperature"]
    assert cal["val_nll_after"] <= cal["val_nll_before"] + 1e-9  # T minimises the val NLL
    assert set(m["calibration"]["before"]) == {"ece", "mce", "brier", "nll"}
    for key in ("accuracy", "f1_macro", "auc"):
        band = m["ci"][key]
        if band["low"] is not None:
            assert band["low"] <= band["high"]
    assert m["ci"]["level"] == 0.95
    assert m["ci"]["accuracy"]["low"] <= m["accuracy"] <= m["ci"]["accuracy"]["high"]
    assert 0.0 <= m["uncertainty"]["aurc"] <= 1.0 and m["uncertainty"]["mc_dropout_passes"] == 0
    with (out / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == m["n"] and "confidence_calibrated" in rows[0]
    assert "entropy" not in rows[0]
    errors = json.loads((out / "errors.json").read_text())
    assert errors["n_errors"] == round(m["n"] * (1 - m["accuracy"]))
    assert len(errors["most_confident_mistakes"]) == min(4, errors["n_errors"])
    html = (project / "plots/report.html").read_text()
    for section in ("Performance", "Calibration", "Uncertainty", "Errors", "Explanations",
                    "Intended use and caveats", "synthetic"):
        assert section in html, section
    assert html.count("data:image/png;base64,") >= 7
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)


def test_stage_with_mc_dropout_and_sections_off(project: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    m = _run(project, monkeypatch, mc_dropout_passes=3, temperature_scaling=False,
             bootstrap=0, gradcam_per_class=0, embedding="none", gallery=0, report=False)
    out = project / "plots/test"
    u = m["uncertainty"]
    assert u["mc_dropout_passes"] == 3 and u["mean_mutual_info"] >= 0.0
    assert "error_auroc_mutual_info" in u and (out / "risk_coverage/mutual_info.csv").is_file()
    with (out / "predictions.csv").open() as fh:
        row = next(csv.DictReader(fh))
    assert {"entropy", "mutual_info"} <= set(row)
    assert m["calibration"]["temperature"] == 1.0 and m["calibration"]["fitted_on"] is None
    assert m["calibration"]["before"] == m["calibration"]["after"]
    assert "ci" not in m
    assert json.loads((project / "models/calibration.json").read_text())["temperature"] == 1.0
    assert "Model card off" in (project / "plots/report.html").read_text()
