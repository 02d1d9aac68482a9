"""The offline `dvc plots show` template, and our reliability/risk-coverage plots in real DVC."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from medclass.evaluate.clinical import (
    calibration_section,
    uncertainty_section,
    write_reliability_csvs,
    write_risk_coverage,
)
from medclass.report.dvc_template import LIBRARIES, TEMPLATE, VENDOR, build_template

REPO = Path(__file__).resolve().parents[2]
DVC = Path(sys.executable).parent / "dvc"
REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=", re.IGNORECASE)
REMOTE_REF = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", re.IGNORECASE)


def test_template_is_built_from_the_vendored_files() -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    assert text == build_template(), "run: python -m medclass.report.dvc_template"
    assert "{plot_divs}" in text and "{refresh_tag}" in text
    assert "{scripts}" not in text  # DVC would put its CDN <script src> tags there
    assert not REMOTE_SCRIPT.search(text) and not REMOTE_REF.search(text)
    assert text.count("<script>") == len(LIBRARIES)
    for name in LIBRARIES:
        assert (VENDOR / f"{name}.min.js").stat().st_size > 10_000
        assert (VENDOR / f"LICENSE-{name}").read_text().startswith("Copyright")
    assert "sourceMappingURL" not in text


def test_build_template_refuses_a_closing_script_tag(tmp_path: Path) -> None:
    for name in LIBRARIES:
        (tmp_path / f"{name}.min.js").write_text("var a = 1;")
    assert build_template(tmp_path).count("var a = 1;") == 3
    (tmp_path / "vega.min.js").write_text("x = '</script>'")
    with pytest.raises(ValueError, match="vega.min.js"):
        build_template(tmp_path)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(cwd / ".site")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not DVC.is_file() or shutil.which("git") is None, reason="needs dvc + git")
def test_dvc_renders_our_plots_offline(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    assert _run(["git", "init", "-q"], repo).returncode == 0
    assert _run([str(DVC), "init", "-q"], repo).returncode == 0
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 4
    logits = rng.normal(size=(40, 4)) + 2.0 * np.eye(4)[labels]
    cal = calibration_section(logits[:20], labels[:20], logits[20:], labels[20:], 10, fit=True)
    probs = np.exp(logits[20:]) / np.exp(logits[20:]).sum(axis=1, keepdims=True)
    unc, scores = uncertainty_section(probs, labels[20:])
    out = repo / "plots" / "test"
    write_reliability_csvs(out / "reliability", cal["rows"])
    write_risk_coverage(out / "risk_coverage", scores, probs.argmax(1) == labels[20:],
                        {n: unc["aurc" if n == "confidence" else f"aurc_{n}"] for n in scores})
    ours = [p for p in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
            if set(p) & {"reliability", "risk_coverage"}]
    assert len(ours) == 2
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": ours}))

    shown = _run([str(DVC), "plots", "show", "--json"], repo)
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    assert "errors" not in result, result.get("errors")
    rel = result["data"]["reliability"][0]["content"]
    files = {row["filename"] for row in rel["data"]["values"]}
    assert files == {"before.csv", "after.csv", "ideal.csv"}
    assert result["data"]["risk_coverage"][0]["content"]["encoding"]["x"]["field"] == "coverage"

    html = _run([str(DVC), "plots", "show", "--html-template", str(TEMPLATE), "-o", "html"],
                repo)
    assert html.returncode == 0, html.stderr
    page = (repo / "html" / "index.html").read_text(encoding="utf-8")
    assert "vegaEmbed" in page and "reliability" in page
    assert not REMOTE_SCRIPT.search(page) and not REMOTE_REF.search(page)
