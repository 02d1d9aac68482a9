"""The model card and the offline `dvc plots show` page, opened in a real (headless) chromium.

Checked on each page: no console error and no uncaught exception, every chart drawn (each
``<img>`` decoded, each vega chart a canvas/SVG with coloured data marks on it), and no request
other than ``file:`` / ``data:`` (the pages must work offline). Two controls show the checks
catch what they look for: a deliberately broken page, and DVC's own (CDN) plots page.

Uses Debian's ``chromium`` (``make install`` installs it with apt-get where it can) through
Playwright's ``executable_path``; Playwright's bundled browsers are not needed. Skips, saying
why, when chromium is not installed or Playwright cannot start it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from medclass.evaluate.figures import (
    write_embedding_png,
    write_image_grid_png,
    write_reliability_png,
    write_risk_coverage_png,
)
from medclass.evaluate.plots import write_confusion_png
from medclass.report.dvc_template import TEMPLATE
from medclass.report.model_card import write_report

REPO = Path(__file__).resolve().parents[2]
DVC = Path(sys.executable).parent / "dvc"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless and quiet: with no network, background services would only flood refused connections.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCAL = ("file:", "data:", "about:blank")
RENDER_TIMEOUT_MS = 60_000  # 2 shared cores: vega parsing 16 specs can take a few seconds

# Every vega chart's container (DVC writes `<div id = "name">` + vegaEmbed('#name', spec); the
# ids come from the file, as vegaEmbed empties the div, script included) holds a canvas or SVG
# with at least MIN_INK coloured pixels: the data marks (axes and text are grey).
EMBED = re.compile(r"""vegaEmbed\(\s*['"]#([^'"]+)['"]""")
CHARTS_JS = """([ids, minInk]) => {
  return ids.map(id => {
    const div = document.getElementById(id);
    const canvas = div && div.querySelector('canvas');
    const svg = div && div.querySelector('svg');
    let ink = 0, w = 0, h = 0, kind = 'none';
    if (canvas && canvas.width > 0 && canvas.height > 0) {
      kind = 'canvas'; w = canvas.width; h = canvas.height;
      const px = canvas.getContext('2d').getImageData(0, 0, w, h).data;
      for (let i = 0; i < px.length; i += 4) {
        const hi = Math.max(px[i], px[i + 1], px[i + 2]);
        const lo = Math.min(px[i], px[i + 1], px[i + 2]);
        if (px[i + 3] > 0 && hi - lo > 40) ink++;
      }
    } else if (svg) {
      const box = svg.getBoundingClientRect();
      kind = 'svg'; w = box.width; h = box.height;
      ink = svg.querySelectorAll('path, rect, circle, line, symbol').length;
    }
    return {id, kind, w, h, ink, ok: w > 0 && h > 0 && ink >= minInk};
  });
}"""
IMAGES_JS = """() => [...document.images].map(i => ({
  alt: i.alt, local: /^(data|file):/.test(i.currentSrc || i.src),
  complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))"""
# Any SVG or canvas on a page that is not a vega chart (the model card has none today).
OTHER_GRAPHICS_JS = """() => [...document.querySelectorAll('svg, canvas')].map(e => {
  const b = e.getBoundingClientRect();
  return {tag: e.tagName, w: b.width, h: b.height, children: e.childElementCount};
})"""
MIN_INK = 150  # an axes-only chart has ~20 (anti-aliasing); real ones have 600+


@dataclass
class Visit:
    """What a page did while it loaded: its console errors, exceptions and requests."""

    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def remote(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(LOCAL)]

    def images(self) -> list[dict[str, Any]]:
        return self.page.evaluate(IMAGES_JS)

    def charts(self, ids: list[str]) -> list[dict[str, Any]]:
        return self.page.evaluate(CHARTS_JS, [ids, MIN_INK])

    def wait_for_charts(self, ids: list[str],
                        timeout_ms: int = RENDER_TIMEOUT_MS) -> list[dict[str, Any]]:
        """The vega charts once all are drawn, or as they are when ``timeout_ms`` runs out."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        with contextlib.suppress(PlaywrightTimeout):  # the caller's asserts say what is missing
            self.page.wait_for_function(f"(args => ({CHARTS_JS})(args).every(c => c.ok))",
                                        arg=[ids, MIN_INK], timeout=timeout_ms, polling=250)
        return self.charts(ids)


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A headless chromium with a fresh profile (``--user-data-dir``), shared by the module."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium, which "
                    "`make install` does where apt-get works)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install -e '.[dev]')")
    manager = sync_api.sync_playwright().start()
    try:
        context = manager.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM,
            headless=True, args=ARGS)
    except Exception as exc:  # noqa: BLE001 - any launch failure means: cannot test here
        manager.stop()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        pytest.skip(f"Playwright cannot launch {CHROMIUM}: {first}")
    yield context
    context.close()
    manager.stop()


@pytest.fixture
def visit(browser_context: Any):
    """Open a local HTML file in a new tab, recording errors and requests from the start."""
    pages = []

    def open_(path: Path) -> Visit:
        page = browser_context.new_page()
        pages.append(page)
        seen = Visit(page)
        page.on("console", lambda m: seen.errors.append(f"console.{m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: seen.errors.append(f"uncaught: {e}"))
        page.on("request", lambda r: seen.requests.append(r.url))
        page.on("requestfailed", lambda r: seen.failed.append(f"{r.url[:120]}: {r.failure}"))
        page.goto(path.resolve().as_uri(), wait_until="load")
        return seen

    yield open_
    for page in pages:
        page.close()


def assert_offline_and_clean(seen: Visit) -> None:
    assert seen.requests and seen.requests[0].startswith("file:"), seen.requests
    assert not seen.remote, f"requests leaving the page: {seen.remote[:5]}"
    assert not seen.failed, seen.failed
    assert not seen.errors, seen.errors


def assert_images_drawn(seen: Visit, html: str) -> None:
    images = seen.images()
    assert len(images) == html.count("<img"), images
    bad = [i for i in images if not (i["local"] and i["complete"] and i["w"] > 0 and i["h"] > 0)]
    assert not bad, f"images not decoded (or not inline): {bad}"
    empty = [g for g in seen.page.evaluate(OTHER_GRAPHICS_JS)
             if not (g["w"] > 0 and g["h"] > 0 and (g["tag"] == "CANVAS" or g["children"]))]
    assert not empty, f"empty SVG/canvas: {empty}"


# --- the model card (plots/report.html) ----------------------------------------------------


def _model_card(path: Path) -> Path:
    """A model card from the report writer with every figure the evaluate stage makes."""
    figs = path.parent / "figs"
    classes = ["normal", "nodule", "<i>effusion</i>"]
    rng = np.random.default_rng(0)
    rows = [{"when": w, "lower": b / 5, "upper": (b + 1) / 5, "count": 3 + b,
             "confidence": b / 5 + 0.1, "accuracy": min(1.0, b / 5 + (0.2 if w == "after" else 0))}
            for w in ("before", "after") for b in range(5)]
    write_reliability_png(figs / "reliability.png", rows, temperature=1.3)
    coverage = np.linspace(0.1, 1.0, 10)
    write_risk_coverage_png(figs / "risk_coverage.png",
                            {"confidence": (coverage, coverage * 0.3),
                             "entropy": (coverage, coverage * 0.35)},
                            {"confidence": 0.16, "entropy": 0.19})
    cm = [[5, 1, 0], [2, 3, 1], [0, 1, 6]]
    write_confusion_png(figs / "confusion.png", cm, classes)
    write_confusion_png(figs / "confusion_normalised.png", cm, classes, normalise=True)
    images = rng.integers(0, 255, size=(4, 1, 16, 16), dtype=np.uint8)
    write_image_grid_png(figs / "mistakes.png", images, [f"p={p}" for p in range(4)], "mistakes")
    write_image_grid_png(figs / "gradcam.png", images, list("abcd"), "grad-cam",
                         heatmaps=rng.random((4, 16, 16)))
    labels = np.arange(30) % 3
    write_embedding_png(figs / "embedding.png", rng.normal(size=(30, 2)), labels,
                        np.roll(labels, 1), classes, "pca")
    names = ("reliability", "risk_coverage", "confusion", "confusion_normalised", "mistakes",
             "gradcam", "embedding")
    cal = {"temperature": 1.3, "fitted_on": "val", "n_bins": 5,
           "before": {"ece": 0.2, "mce": 0.4, "brier": 0.3, "nll": 0.9},
           "after": {"ece": 0.05, "mce": 0.1, "brier": 0.25, "nll": 0.6}}
    metrics = {"accuracy": 0.7, "f1_macro": 0.68, "auc": 0.85, "n": 19, "best_epoch": 2,
               "per_class": {c: {"precision": 0.7, "recall": 0.7, "f1": 0.7, "support": 6}
                             for c in classes},
               "calibration": cal,
               "uncertainty": {"mc_dropout_passes": 0, "aurc": 0.16, "error_auroc": 0.7,
                               "aurc_entropy": 0.19, "error_auroc_entropy": 0.66},
               "ci": {"level": 0.95, "resamples": 50, "accuracy": {"low": 0.5, "high": 0.9}}}
    meta = {"model": "simple_cnn_tiny", "model_kwargs": {}, "classes": classes,
            "image_size": 16, "channels": 1, "mean": [0.5], "std": [0.2],
            "params": {"data": {"source": "synthetic"}, "train": {"pretrained": "none"}}}
    write_report(path, meta=meta, stats={"counts": {"test": {c: 6 for c in classes}}},
                 metrics=metrics, errors={"top_confused_pairs": [
                     {"actual": "nodule", "predicted": "normal", "count": 2, "rate": 0.33}]},
                 figures={n: figs / f"{n}.png" for n in names}, n_params=1234,
                 gradcam_layer="features[-1]", evaluate_params={"n_bins": 5})
    return path


def test_generated_model_card_renders_offline(tmp_path: Path, visit) -> None:
    card = _model_card(tmp_path / "report.html")
    html = card.read_text(encoding="utf-8")
    assert html.count("<img") == 7  # every figure made it in
    seen = visit(card)
    assert_offline_and_clean(seen)
    assert_images_drawn(seen, html)
    assert seen.page.locator("h2").count() >= 8  # the sections were parsed, not shown as text


def test_committed_model_card_renders_offline(visit) -> None:
    card = REPO / "plots" / "report.html"
    if not card.is_file():
        pytest.skip("no plots/report.html in this checkout (written by `dvc repro`)")
    html = card.read_text(encoding="utf-8")
    assert html.count("<img") >= 1, "the pipeline's model card has no figure"
    seen = visit(card)
    assert_offline_and_clean(seen)
    assert_images_drawn(seen, html)


# --- the offline `dvc plots show` page ----------------------------------------------------------


def _dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(cwd / ".site")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def plots_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC project holding the repository's plots/ data and dvc.yaml's plot definitions
    (no pipeline run: `dvc plots show` only reads the data files)."""
    if not DVC.is_file() or shutil.which("git") is None:
        pytest.skip("needs dvc (in the venv) and git")
    defs = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["plots"]
    root = tmp_path_factory.mktemp("plots-project")
    shutil.copytree(REPO / "plots", root / "plots",
                    ignore=shutil.ignore_patterns("*.png", "*.html"))
    (root / "dvc.yaml").write_text(yaml.safe_dump({"plots": defs}))
    for args in (["git", "init", "-q"], [str(DVC), "init", "-q"]):
        done = _dvc(args, root)
        assert done.returncode == 0, done.stderr
    return root


def _plots_page(project: Path, out: str, *template: str) -> tuple[Path, list[str]]:
    """`dvc plots show -o out`: the page and the ids of its vega charts."""
    done = _dvc([str(DVC), "plots", "show", *template, "-o", out], project)
    assert done.returncode == 0, done.stderr
    page = project / out / "index.html"
    return page, EMBED.findall(page.read_text(encoding="utf-8"))


def test_offline_dvc_plots_page_renders(plots_project: Path, visit) -> None:
    page, ids = _plots_page(plots_project, "offline", "--html-template", str(TEMPLATE))
    defs = yaml.safe_load((plots_project / "dvc.yaml").read_text())["plots"]
    assert len(ids) >= len(defs), f"{ids}: fewer charts than the {len(defs)} plot definitions"
    seen = visit(page)
    charts = seen.wait_for_charts(ids)
    assert [c["id"] for c in charts] == ids
    assert all(c["ok"] for c in charts), [c for c in charts if not c["ok"]]
    for name in ("reliability", "risk_coverage", "confusion_matrix"):
        assert any(c["id"] == name for c in charts), name
    assert_offline_and_clean(seen)


# --- controls: the checks above fail on pages that are broken --------------------------------


def test_the_checks_catch_a_broken_page(tmp_path: Path, visit) -> None:
    page = tmp_path / "broken.html"
    html = ("<!DOCTYPE html><html><body>"
            "<img alt='truncated' src='data:image/png;base64,iVBORw0KGgo='>"
            "<img alt='remote' src='http://192.0.2.1/x.png'>"
            "<svg width='50' height='50'></svg>"
            "<script>console.error('boom'); null.x;</script></body></html>")
    page.write_text(html)
    seen = visit(page)
    assert seen.remote == ["http://192.0.2.1/x.png"]
    assert any("boom" in e for e in seen.errors)
    assert any(e.startswith("uncaught:") for e in seen.errors)
    with pytest.raises(AssertionError, match="requests leaving the page"):
        assert_offline_and_clean(seen)
    with pytest.raises(AssertionError, match="not decoded"):
        assert_images_drawn(seen, html)
    seen.page.evaluate("document.querySelectorAll('img').forEach(i => i.remove())")
    with pytest.raises(AssertionError, match="empty SVG/canvas"):
        assert_images_drawn(seen, "")


def test_the_chart_check_tells_an_empty_chart(tmp_path: Path, visit) -> None:
    def chart(name: str, values: list[dict[str, float]]) -> str:
        spec = {"data": {"values": values}, "mark": "line",
                "encoding": {"x": {"field": "x", "type": "quantitative"},
                             "y": {"field": "y", "type": "quantitative"}}}
        return (f'<div id = "{name}"><script type="text/javascript">var spec = '
                f"{json.dumps(spec)}; vegaEmbed('#{name}', spec);</script></div>")

    divs = chart("drawn", [{"x": i, "y": i * i} for i in range(10)]) + chart("empty", [])
    page = tmp_path / "two.html"
    page.write_text(TEMPLATE.read_text(encoding="utf-8").replace("{refresh_tag}", "")
                    .replace("{plot_divs}", divs), encoding="utf-8")
    ids = EMBED.findall(page.read_text(encoding="utf-8"))
    assert ids == ["drawn", "empty"]
    seen = visit(page)
    drawn, empty = seen.wait_for_charts(ids, timeout_ms=5_000)
    assert drawn["ok"] and drawn["kind"] == "canvas", drawn
    assert not empty["ok"] and empty["w"] > 0 and empty["ink"] < MIN_INK, empty
    assert_offline_and_clean(seen)


def test_the_checks_catch_dvcs_default_cdn_page(plots_project: Path, visit) -> None:
    page, ids = _plots_page(plots_project, "cdn")  # DVC's own template: vega from a CDN
    assert ids
    seen = visit(page)
    charts = seen.wait_for_charts(ids, timeout_ms=3_000)
    assert len(charts) == len(ids) and not any(c["ok"] for c in charts)
    assert any("vega" in u for u in seen.remote), seen.requests
    assert any("vegaEmbed" in e for e in seen.errors), seen.errors
