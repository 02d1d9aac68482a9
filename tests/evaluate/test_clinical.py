"""The evaluate stage's sections on hand-made arrays (hand-computed values)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medclass.errors import MedclassError
from medclass.evaluate.bootstrap import ci_section
from medclass.evaluate.calibration import fit_temperature
from medclass.evaluate.clinical import (
    calibration_section,
    error_section,
    uncertainty_section,
    write_reliability_csvs,
    write_risk_coverage,
)
from medclass.evaluate.plots import write_predictions_csv

# confidences 0.9, 0.8, 0.6, 0.7; samples 1 and 3 are wrong
PROBS = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
LABELS = np.array([0, 0, 0, 0])


def test_uncertainty_section_by_hand() -> None:
    m, scores = uncertainty_section(PROBS, LABELS)
    # kept by confidence: ok, wrong, wrong, ok -> risks 0, 1/2, 2/3, 2/4
    assert m["aurc"] == pytest.approx((0 + 1 / 2 + 2 / 3 + 2 / 4) / 4)
    # uncertainty 1 - conf: errors 0.2, 0.3 vs correct 0.1, 0.4 -> 2 of 4 pairs ranked right
    assert m["error_auroc"] == pytest.approx(0.5)
    np.testing.assert_allclose(scores["confidence"], [0.1, 0.2, 0.4, 0.3])
    ent = -(PROBS * np.log(PROBS)).sum(axis=1)
    np.testing.assert_allclose(scores["entropy"], ent)
    assert m["mean_entropy"] == pytest.approx(ent.mean())
    assert m["mc_dropout_passes"] == 0 and "mutual_info" not in scores


def test_uncertainty_section_with_mc_stack() -> None:
    a = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.5, 0.5]])
    b = np.array([[1.0, 0.0], [0.5, 0.5], [1.0, 0.0], [0.5, 0.5]])
    m, scores = uncertainty_section(PROBS, LABELS, np.stack([a, b]))
    # sample 2: passes disagree fully -> MI = H([.5, .5]) - 0 = ln 2; the others agree -> 0
    np.testing.assert_allclose(scores["mutual_info"], [0, 0, np.log(2), 0], atol=1e-12)
    np.testing.assert_allclose(scores["entropy"], [0, np.log(2), np.log(2), np.log(2)],
                               atol=1e-12)
    assert m["mc_dropout_passes"] == 2
    assert m["mc_accuracy"] == pytest.approx(1.0)  # ties go to class 0 = every label
    # errors (samples 1, 3: MI 0, 0) vs correct (0, 2: MI 0, ln 2): ties count ½ -> 1/4
    assert m["error_auroc_mutual_info"] == pytest.approx(0.25)
    assert {"aurc_entropy", "aurc_mutual_info", "mean_mutual_info"} <= set(m)


def test_calibration_section_fit_and_no_fit() -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    logits = 3.0 * (rng.normal(size=(60, 3)) + 1.5 * np.eye(3)[labels])  # overconfident
    cal = calibration_section(logits[:30], labels[:30], logits[30:], labels[30:], 10, fit=True)
    assert cal["temperature"] == pytest.approx(fit_temperature(logits[:30], labels[:30]))
    assert cal["temperature"] > 1 and cal["fitted_on"] == "val"
    assert {r["when"] for r in cal["rows"]} == {"before", "after"} and len(cal["rows"]) == 20
    off = calibration_section(logits[:30], labels[:30], logits[30:], labels[30:], 10, fit=False)
    assert off["temperature"] == 1.0 and off["fitted_on"] is None
    assert off["before"] == off["after"] == cal["before"]


def test_ci_section() -> None:
    assert ci_section(PROBS, LABELS, 0, 0.95, 0) == {}
    perfect = np.eye(3)[np.arange(12) % 3] * 0.9 + 0.1 / 3
    ci = ci_section(perfect, np.arange(12) % 3, 200, 0.9, 0)
    assert ci["level"] == 0.9 and ci["resamples"] == 200 and ci["stratified"] is True
    for key in ("accuracy", "f1_macro", "auc"):
        assert ci[key] == {"low": 1.0, "high": 1.0}


def test_error_section() -> None:
    probs = np.array([[0.9, 0.1, 0.0], [0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6],
                      [0.1, 0.1, 0.8]])
    labels = np.array([0, 0, 1, 2, 1])
    cm = [[1, 1, 0], [1, 0, 1], [0, 0, 1]]
    errors, idx = error_section(probs, labels, ["a", "b", "c"], cm, list("vwxyz"), k=2)
    assert idx.tolist() == [4, 1]  # wrong with p = 0.8, 0.7 (0.6 is third)
    assert errors["n_errors"] == 3
    assert errors["most_confident_mistakes"][0] == {
        "path": "z", "actual": "b", "predicted": "c", "confidence": 0.8}
    pairs = errors["top_confused_pairs"]
    assert [(p["actual"], p["predicted"]) for p in pairs] == [("a", "b"), ("b", "a"), ("b", "c")]
    assert pairs[1]["rate"] == pytest.approx(0.5)
    assert [r["support"] for r in errors["per_class"]] == [2, 2, 1]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_reliability_and_risk_coverage_files(tmp_path: Path) -> None:
    rows = [{"when": w, "lower": 0.5, "upper": 1.0, "count": n, "confidence": c, "accuracy": a}
            for w, n, c, a in (("before", 3, 0.8, 2 / 3), ("before", 0, None, None),
                               ("after", 3, 0.7, 2 / 3))]
    write_reliability_csvs(tmp_path / "rel", rows)
    before = _rows(tmp_path / "rel/before.csv")
    assert len(before) == 1 and float(before[0]["confidence"]) == pytest.approx(0.8)
    assert [r["accuracy"] for r in _rows(tmp_path / "rel/ideal.csv")] == ["0", "1"]
    correct = np.array([True, False, True, False])
    _, scores = uncertainty_section(PROBS, LABELS)
    write_risk_coverage(tmp_path / "rc", scores, correct, {"confidence": 0.4, "entropy": 0.4})
    rc = _rows(tmp_path / "rc/confidence.csv")
    assert [float(r["risk"]) for r in rc] == pytest.approx([0, 1 / 2, 2 / 3, 2 / 4], abs=1e-5)
    assert [float(r["coverage"]) for r in rc] == [0.25, 0.5, 0.75, 1.0]
    assert (tmp_path / "rc.png").stat().st_size > 1000


def test_predictions_csv_extra_columns(tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    write_predictions_csv(out, ["a", "b", "c", "d"], LABELS, PROBS, ["x", "y"],
                          {"entropy": np.array([0.1, 0.2, 0.3, 0.4])})
    rows = _rows(out)
    assert list(rows[0])[-1] == "entropy" and rows[3]["entropy"] == "0.4"
    assert rows[1]["confidence"] == "0.8" and rows[1]["predicted"] == "y"
    with pytest.raises(MedclassError, match="entropy"):
        write_predictions_csv(out, ["a", "b", "c", "d"], LABELS, PROBS, ["x", "y"],
                              {"entropy": np.zeros(3)})
