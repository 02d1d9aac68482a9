"""``plots/report.html``: a self-contained model card of one evaluation run.

Everything is inline (CSS in a ``<style>`` element, figures as base64 ``data:`` PNGs), with no
script and no external resource, so the file opens offline and can be mailed or archived as it
is. All text taken from the run (class names, paths, params) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medclass.io import write_text

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; max-width: 520px; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 1em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""

CAPTIONS = {
    "confusion": "Confusion matrix, counts (rows: actual class, columns: predicted).",
    "confusion_normalised": "Confusion matrix, each row divided by its total (= recall on the "
                            "diagonal).",
    "reliability": "Reliability diagram: mean accuracy against mean confidence per bin; the "
                   "diagonal is perfect calibration, points below it are over-confident.",
    "risk_coverage": "Risk–coverage: error rate among the images the model keeps when it "
                     "abstains on the most uncertain ones first; lower AURC is better.",
    "mistakes": "The most confident mistakes: wrong predictions with the highest probability.",
    "gradcam": "Grad-CAM of the predicted class for a fixed sample of test images per class.",
    "embedding": "2-D projection of the penultimate features, coloured by actual class.",
}


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _figures(figures: Mapping[str, Path], names: Sequence[str]) -> str:
    return "".join(_img(figures[n], CAPTIONS.get(n, n)) for n in names
                   if n in figures and Path(figures[n]).is_file())


def _performance(m: Mapping[str, Any]) -> str:
    ci = m.get("ci", {})
    level = ci.get("level")
    label = f"{level:.0%} CI" if level else "CI"
    rows = []
    for key, name in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                      ("f1_macro", "macro F1"), ("precision_macro", "macro precision"),
                      ("recall_macro", "macro recall"), ("auc", "ROC AUC"),
                      ("loss", "NLL (nats)")):
        band = ci.get(key)
        rows.append([name, m.get(key), f"[{_fmt(band['low'])}, {_fmt(band['high'])}]"
                     if band else "–"])
    note = (f"<p>Bootstrap: {ci['resamples']} stratified resamples of the test split "
            f"(percentile intervals).</p>" if ci else "<p>Bootstrap CIs are off.</p>")
    per_class = [[name, v["precision"], v["recall"], v["f1"], v["support"]]
                 for name, v in m.get("per_class", {}).items()]
    return (_table(["metric", "value", label], rows) + note + "<h3>Per class</h3>"
            + _table(["class", "precision", "recall", "F1", "support"], per_class))


def _with_ci(m: Mapping[str, Any], key: str) -> str:
    """``value [low, high]`` of one metric (the value alone when CIs are off)."""
    band = m.get("ci", {}).get(key)
    if not band or band["low"] is None:
        return _fmt(m.get(key))
    return f"{_fmt(m.get(key))} [{_fmt(band['low'], 3)}, {_fmt(band['high'], 3)}]"


def _external(m: Mapping[str, Any]) -> list[str]:
    """The external test sets next to the test split; nothing when there are none."""
    sets: Mapping[str, Any] = m.get("external", {})
    if not sets:
        return []
    keys = ("accuracy", "f1_macro", "auc")
    rows = [["test split (internal)", m.get("n"), *(_with_ci(m, k) for k in keys), "–", "–", "–"]]
    notes = []
    for name, e in sets.items():
        diff = e.get("vs_test", {})
        rows.append([name, e.get("n_images"), *(_with_ci(e, k) for k in keys),
                     *("–" if diff.get(k) is None else f"{diff[k]:+.4f}" for k in keys)])
        absent = e.get("classes_absent") or []
        notes.append(f"<li><code>{html.escape(name)}</code>: {html.escape(str(e.get('path')))}; "
                     f"{e.get('n_excluded', 0)} unreadable file(s) excluded"
                     + (f"; no images of {html.escape(', '.join(absent))} (AUC undefined)"
                        if absent else "") + "</li>")
    return ["<h2 id='external'>External test sets</h2>",
            "<p>The same model, normalisation and test-time augmentation on each "
            "<code>evaluate.external</code> set; Δ is external minus the test split (a drop "
            "is domain shift). Brackets: bootstrap CIs like the test split's.</p>",
            _table(["set", "images", "accuracy", "macro F1", "ROC AUC", "Δ accuracy",
                    "Δ macro F1", "Δ AUC"], rows),
            "<ul>" + "".join(notes) + "</ul>"]


def _calibration(cal: Mapping[str, Any]) -> str:
    keys = (("ece", "ECE"), ("mce", "MCE"), ("brier", "Brier"), ("nll", "NLL"))
    rows = [[name, cal["before"][k], cal["after"][k]] for k, name in keys]
    fitted = ("fitted on the validation split" if cal.get("fitted_on") else
              "temperature scaling off")
    return (f"<p>Temperature T = {_fmt(cal['temperature'])} ({fitted}); "
            f"{cal['n_bins']} equal-width confidence bins.</p>"
            + _table(["score (test)", "before (T = 1)", "after (T)"], rows))


def _uncertainty(u: Mapping[str, Any]) -> str:
    passes = u.get("mc_dropout_passes", 0)
    rows = [["1 − softmax confidence", u.get("aurc"), u.get("error_auroc")],
            ["predictive entropy" + (" (MC mean)" if passes else " (softmax)"),
             u.get("aurc_entropy"), u.get("error_auroc_entropy")]]
    if passes:
        rows.append(["mutual information (MC)", u.get("aurc_mutual_info"),
                     u.get("error_auroc_mutual_info")])
    mc = (f"<p>MC dropout: {passes} passes (dropout on, BatchNorm frozen); accuracy of the MC "
          f"mean {_fmt(u.get('mc_accuracy'))}.</p>" if passes else
          "<p>MC dropout off (<code>evaluate.mc_dropout_passes: 0</code>).</p>")
    return mc + _table(["uncertainty score", "AURC (lower better)",
                        "error-detection AUROC"], rows)


def _caveats(params: Mapping[str, Any], n_test: int) -> str:
    items = [
        "Research and engineering tool: not a medical device, not validated for diagnosis, "
        "triage or any clinical decision.",
        f"The test split has {n_test} images: confidence intervals are wide and small "
        "differences between runs are not meaningful.",
        "Performance, calibration and the temperature hold for data drawn like this split; "
        "other scanners, sites, populations or prevalences (dataset shift) need their own "
        "evaluation and recalibration.",
        "No subgroup (age, sex, site, device) analysis is included; look for hidden "
        "stratification before relying on aggregate numbers.",
        "Grad-CAM shows where class-relevant features respond at a coarse layer; it is not a "
        "causal explanation or a segmentation.",
    ]
    if params.get("data", {}).get("source") == "synthetic":
        items.insert(1, "Trained and tested on the built-in <b>synthetic</b> images: the numbers "
                        "say nothing about performance on real radiographs.")
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def render_report(
    meta: Mapping[str, Any], stats: Mapping[str, Any], metrics: Mapping[str, Any],
    errors: Mapping[str, Any], figures: Mapping[str, Path], *, n_params: int,
    gradcam_layer: str | None = None, created: str | None = None,
    evaluate_params: Mapping[str, Any] | None = None,
) -> str:
    """The model card as one HTML string (see the module docstring)."""
    params = meta.get("params", {})
    classes = list(meta["classes"])
    counts = stats.get("counts", {})
    splits = [s for s in ("train", "val", "test") if s in counts]
    data_rows = [[c] + [counts[s].get(c, 0) for s in splits] for c in classes]
    data_rows.append(["total"] + [sum(counts[s].values()) for s in splits])
    data = params.get("data", {})
    kwargs = json.dumps(meta.get("model_kwargs", {}))
    pairs = [[p["actual"], p["predicted"], p["count"], p["rate"]]
             for p in errors.get("top_confused_pairs", [])]
    sections = [
        f"<h1>Model card: {html.escape(str(meta['model']))}</h1>",
        f"<p>Generated{f' {html.escape(created)}' if created else ''} by the medclass "
        f"evaluate stage. Best epoch "
        f"{_fmt(metrics.get('best_epoch'))}; {len(classes)} classes.</p>",
        "<h2 id='model'>Model</h2>",
        _table(["field", "value"], [
            ["backbone", meta["model"]], ["constructor options", kwargs],
            ["parameters", f"{n_params:,}"], ["input", f"{meta['image_size']} px, "
                                             f"{meta['channels']} channel(s)"],
            ["normalisation mean / std", f"{meta['mean']} / {meta['std']}"],
            ["pretrained", params.get("train", {}).get("pretrained", "–")],
        ]),
        "<h2 id='data'>Data</h2>",
        f"<p>Source <code>{_fmt(stats.get('source') or data.get('source'))}</code>; classes "
        f"{html.escape(', '.join(classes))}.</p>",
        _table(["class", *splits], data_rows),
        "<h2 id='performance'>Performance (test split)</h2>", _performance(metrics),
        *_external(metrics),
        "<h2 id='calibration'>Calibration</h2>", _calibration(metrics["calibration"]),
        _figures(figures, ["reliability"]),
        "<h2 id='uncertainty'>Uncertainty</h2>", _uncertainty(metrics["uncertainty"]),
        _figures(figures, ["risk_coverage"]),
        "<h2 id='errors'>Errors</h2>",
        "<h3>Most confused class pairs</h3>",
        _table(["actual", "predicted", "count", "share of actual"], pairs) if pairs
        else "<p>No misclassified test images.</p>",
        _figures(figures, ["confusion", "confusion_normalised", "mistakes"]),
        "<h2 id='explanations'>Explanations</h2>",
        (f"<p>Grad-CAM target layer: {html.escape(gradcam_layer)}.</p>" if gradcam_layer
         else "<p>Grad-CAM off.</p>"),
        _figures(figures, ["gradcam", "embedding"]),
        "<h2 id='caveats'>Intended use and caveats</h2>",
        f"<div class='note'>{_caveats(params, int(metrics.get('n', 0)))}</div>",
        "<h2 id='params'>Parameters</h2>",
        _table(["evaluate.*", "value"], sorted((evaluate_params or {}).items())),
        f"<details><summary>params.yaml of the training run</summary><pre>"
        f"{html.escape(json.dumps(params, indent=2, sort_keys=True))}</pre></details>",
    ]
    body = "\n".join(sections)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>medclass model card: {html.escape(str(meta['model']))}</title>"
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def write_report(path: str | os.PathLike, **kwargs: Any) -> None:
    """Render :func:`render_report` and write it atomically."""
    write_text(path, render_report(**kwargs))
