"""Plot files: CSV layout, ROC folder rebuild, confusion PNG."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from medclass.errors import MedclassError
from medclass.evaluate.metrics import per_class_roc
from medclass.evaluate.plots import (
    sanitise_names,
    write_confusion_png,
    write_predictions_csv,
    write_roc_csvs,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_sanitise_names_is_safe_unique_and_stable() -> None:
    names = ["a b", "a/b", "", "ok-1_x", "x_2", "x", "x"]
    assert sanitise_names(names) == ["a_b", "a_b_1", "class2", "ok-1_x", "x_2", "x", "x_6"]
    assert sanitise_names(names) == sanitise_names(names)


def test_predictions_csv_header_and_rows(tmp_path: Path) -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]])
    labels = np.array([0, 1, 1])
    names = ["normal", "pneu monia", "covid,19"]
    out = tmp_path / "eval" / "predictions.csv"
    write_predictions_csv(out, ["a.png", "b.png", "c d.png"], labels, probs, names)

    header = out.read_text(encoding="utf-8").splitlines()[0]
    assert header == "path,actual,predicted,confidence,prob_normal,prob_pneu_monia,prob_covid_19"
    rows = _read_csv(out)
    assert [r["path"] for r in rows] == ["a.png", "b.png", "c d.png"]
    assert [r["actual"] for r in rows] == ["normal", "pneu monia", "pneu monia"]
    assert [r["predicted"] for r in rows] == ["normal", "covid,19", "pneu monia"]
    assert [float(r["confidence"]) for r in rows] == pytest.approx([0.7, 0.6, 0.5])
    assert float(rows[1]["prob_covid_19"]) == pytest.approx(0.6)
    assert float(rows[2]["prob_normal"]) == pytest.approx(0.25)
    assert [p.name for p in out.parent.iterdir()] == ["predictions.csv"]  # no temp files left


def test_predictions_csv_rejects_mismatched_inputs(tmp_path: Path) -> None:
    probs = np.full((2, 2), 0.5)
    with pytest.raises(MedclassError, match="differ in length"):
        write_predictions_csv(tmp_path / "p.csv", ["a"], np.array([0, 1]), probs, ["x", "y"])
    with pytest.raises(MedclassError, match="shape"):
        write_predictions_csv(tmp_path / "p.csv", ["a", "b"], np.array([0, 1]), probs, ["x"])
    with pytest.raises(MedclassError, match="labels"):
        write_predictions_csv(tmp_path / "p.csv", ["a", "b"], np.array([0, 2]), probs, ["x", "y"])
    assert not (tmp_path / "p.csv").exists()


def test_roc_csv_content(tmp_path: Path) -> None:
    p1 = np.array([0.1, 0.2, 0.7, 0.3, 0.6, 0.4])
    probs = np.stack([1 - p1, p1], axis=1)
    labels = np.array([0, 0, 0, 0, 1, 1])
    roc = per_class_roc(probs, labels, ["benign", "malignant tumour"])
    out = tmp_path / "roc"
    write_roc_csvs(out, roc)

    assert sorted(p.name for p in out.iterdir()) == ["benign.csv", "malignant_tumour.csv"]
    text = (out / "malignant_tumour.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "fpr,tpr,threshold"
    rows = _read_csv(out / "malignant_tumour.csv")
    curve = roc["malignant tumour"]
    assert [float(r["fpr"]) for r in rows] == pytest.approx(curve["fpr"], abs=1e-6)
    assert [float(r["tpr"]) for r in rows] == pytest.approx(curve["tpr"], abs=1e-6)
    thresholds = [float(r["threshold"]) for r in rows]
    assert all(math.isfinite(t) for t in thresholds)
    assert thresholds[0] == 1.0
    # negatives 0.1 0.2 0.7 0.3, positives 0.6 0.4: at >= 0.7 one negative is in (fpr 1/4);
    # at >= 0.4 both positives too (tpr 1; sklearn drops the collinear 0.6 point).
    assert [tuple(r.values()) for r in rows] == [
        ("0", "0", "1"),
        ("0.25", "0", "0.7"),
        ("0.25", "1", "0.4"),
        ("1", "1", "0.1"),
    ]


def test_roc_folder_is_rebuilt_without_stale_files(tmp_path: Path) -> None:
    curve = {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0], "threshold": [1.0, 0.0]}
    out = tmp_path / "roc"
    write_roc_csvs(out, {"a": curve, "b": curve, "c": curve})
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "b.csv", "c.csv"]
    write_roc_csvs(out, {"a": curve})
    assert [p.name for p in out.iterdir()] == ["a.csv"]
    assert [p.name for p in tmp_path.iterdir()] == ["roc"]  # no temp/old folders left


def test_roc_folder_untouched_when_writing_fails(tmp_path: Path) -> None:
    good = {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0], "threshold": [1.0, 0.0]}
    bad = {"fpr": [0.0, 1.0], "tpr": [0.0], "threshold": [1.0, 0.0]}
    out = tmp_path / "roc"
    write_roc_csvs(out, {"a": good})
    with pytest.raises(ValueError):
        write_roc_csvs(out, {"b": good, "c": bad})
    assert [p.name for p in out.iterdir()] == ["a.csv"]


@pytest.mark.parametrize("normalise", [False, True])
def test_confusion_png(tmp_path: Path, normalise: bool) -> None:
    cm = [[5, 1, 0], [2, 3, 0], [0, 0, 0]]  # last row empty: must not divide by zero
    out = tmp_path / "plots" / "confusion.png"
    write_confusion_png(out, cm, ["a", "b", "a long class name"], normalise=normalise)
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in out.parent.iterdir()] == ["confusion.png"]


def test_confusion_png_rejects_wrong_shape(tmp_path: Path) -> None:
    with pytest.raises(MedclassError, match="2x2"):
        write_confusion_png(tmp_path / "c.png", [[1, 2, 3]], ["a", "b"], normalise=False)
