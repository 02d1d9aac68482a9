"""plots/report.html: sections, numbers, inline figures, escaping, nothing external."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from medclass.evaluate.figures import write_image_grid_png
from medclass.report.model_card import render_report, write_report

REMOTE = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//|@import|url\(""", re.IGNORECASE)

META = {"model": "simple_cnn", "model_kwargs": {}, "classes": ["normal", "<b>bad</b>"],
        "image_size": 16, "channels": 1, "mean": [0.5], "std": [0.2],
        "params": {"data": {"source": "synthetic"}, "train": {"pretrained": "none"}}}
STATS = {"counts": {"train": {"normal": 8, "<b>bad</b>": 8}, "val": {"normal": 2,
                                                                     "<b>bad</b>": 2},
                    "test": {"normal": 3, "<b>bad</b>": 3}}}
CAL = {"temperature": 1.5, "fitted_on": "val", "n_bins": 15,
       "before": {"ece": 0.2, "mce": 0.4, "brier": 0.3, "nll": 0.9},
       "after": {"ece": 0.05, "mce": 0.1, "brier": 0.25, "nll": 0.6}}
METRICS = {"accuracy": 0.8333, "f1_macro": 0.8, "auc": 0.9, "n": 6, "best_epoch": 3,
           "per_class": {"normal": {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "support": 3},
                         "<b>bad</b>": {"precision": 0.75, "recall": 1.0, "f1": 0.857,
                                        "support": 3}},
           "calibration": CAL,
           "uncertainty": {"mc_dropout_passes": 0, "aurc": 0.0123, "error_auroc": 0.75,
                           "aurc_entropy": 0.02, "error_auroc_entropy": 0.7},
           "ci": {"level": 0.95, "resamples": 1000, "accuracy": {"low": 0.5, "high": 1.0}}}
ERRORS = {"top_confused_pairs": [{"actual": "normal", "predicted": "<b>bad</b>", "count": 1,
                                  "rate": 0.3333}]}


def test_report_sections_numbers_and_escaping(tmp_path: Path) -> None:
    png = tmp_path / "gradcam.png"
    write_image_grid_png(png, np.zeros((2, 1, 8, 8), np.uint8), ["a", "b"], "t",
                         heatmaps=np.ones((2, 8, 8)))
    html = render_report(META, STATS, METRICS, ERRORS, {"gradcam": png, "missing": tmp_path / "x"},
                         n_params=1234, gradcam_layer="forward_features output",
                         evaluate_params={"n_bins": 15})
    for section in ("Model card: simple_cnn", "Data", "Performance (test split)", "Calibration",
                    "Uncertainty", "Errors", "Explanations", "Intended use and caveats",
                    "Parameters", "synthetic", "not a medical device"):
        assert section in html, section
    assert "[0.5000, 1.0000]" in html and "95% CI" in html  # accuracy CI
    assert "T = 1.5000" in html and "0.0500" in html  # ECE after scaling
    assert "0.0123" in html and "1,234" in html
    assert html.count("data:image/png;base64,") == 1  # the missing figure is skipped
    assert "<b>bad</b>" not in html and "&lt;b&gt;bad&lt;/b&gt;" in html
    assert not REMOTE.search(html) and "<script" not in html
    assert "forward_features output" in html


def test_report_without_optional_sections(tmp_path: Path) -> None:
    metrics = {**METRICS, "ci": {}, "uncertainty": {**METRICS["uncertainty"],
                                                    "mc_dropout_passes": 5,
                                                    "aurc_mutual_info": 0.01,
                                                    "mc_accuracy": 0.8}}
    meta = {**META, "params": {"data": {"source": "folder"}}}
    out = tmp_path / "r.html"
    write_report(out, meta=meta, stats=STATS, metrics=metrics, errors={}, figures={},
                 n_params=1)
    html = out.read_text()
    assert "Bootstrap CIs are off" in html and "Grad-CAM off" in html
    assert "MC dropout: 5 passes" in html and "mutual information (MC)" in html
    assert "No misclassified test images" in html and "synthetic" not in html
