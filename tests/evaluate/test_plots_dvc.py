"""The plot files load in real DVC (`dvc plots show --json`) with our dvc.yaml plot syntax."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medclass.evaluate.metrics import classification_metrics, per_class_roc
from medclass.evaluate.plots import write_confusion_png, write_predictions_csv, write_roc_csvs

DVC = Path(sys.executable).parent / "dvc"

DVC_YAML = """\
plots:
  - confusion:
      template: confusion
      x: actual
      y:
        eval/predictions.csv: predicted
  - eval/roc:
      template: simple
      x: fpr
      y: tpr
  - eval/confusion.png
  - eval/confusion_normalised.png
"""

pytestmark = [
    pytest.mark.skipif(not DVC.is_file(), reason=f"dvc not installed next to {sys.executable}"),
    pytest.mark.skipif(shutil.which("git") is None, reason="git not installed"),
]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(cwd / ".site")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_dvc_plots_show_accepts_our_files(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    assert _run(["git", "init", "-q"], repo).returncode == 0
    init = _run([str(DVC), "init", "-q"], repo)
    assert init.returncode == 0, init.stderr

    rng = np.random.default_rng(0)
    names = ["normal", "pneu monia", "covid/19"]
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=12)
    labels = np.arange(12) % 3
    metrics = classification_metrics(probs, labels, names)
    write_predictions_csv(
        repo / "eval" / "predictions.csv", [f"img{i}.png" for i in range(12)], labels, probs, names
    )
    write_roc_csvs(repo / "eval" / "roc", per_class_roc(probs, labels, names))
    cm = metrics["confusion_matrix"]
    write_confusion_png(repo / "eval" / "confusion.png", cm, names, normalise=False)
    write_confusion_png(repo / "eval" / "confusion_normalised.png", cm, names, normalise=True)
    (repo / "dvc.yaml").write_text(DVC_YAML, encoding="utf-8")

    shown = _run([str(DVC), "plots", "show", "--json"], repo)
    # DVC exits 0 even when a plot fails to load: errors show up in the JSON and as warnings.
    assert shown.returncode == 0, shown.stderr
    assert "WARNING" not in shown.stderr and "ERROR" not in shown.stderr, shown.stderr
    result = json.loads(shown.stdout)
    assert "errors" not in result, result.get("errors")
    data = result["data"]
    assert set(data) == {
        "confusion",
        "eval/roc/normal.csv",
        "eval/roc/pneu_monia.csv",
        "eval/roc/covid_19.csv",
        "eval/confusion.png",
        "eval/confusion_normalised.png",
    }
    confusion = data["confusion"][0]
    assert confusion["type"] == "vega"
    rows = confusion["content"]["data"]["values"]
    assert len(rows) == 12
    assert {r["actual"] for r in rows} == set(names)
    roc = data["eval/roc/normal.csv"][0]["content"]
    assert roc["encoding"]["x"]["field"] == "fpr" and roc["encoding"]["y"]["field"] == "tpr"
    assert data["eval/confusion.png"][0]["type"] == "image"

    html = _run([str(DVC), "plots", "show", "-o", "html"], repo)
    assert html.returncode == 0, html.stderr
    assert "WARNING" not in html.stderr and "ERROR" not in html.stderr, html.stderr
    assert (repo / "html" / "index.html").is_file()
