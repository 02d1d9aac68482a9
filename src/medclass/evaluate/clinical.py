"""Clinical-grade evaluation of a trained model: the evaluate stage's orchestration.

:func:`evaluate_model` runs the model on the val and test splits and writes, under ``out``
(``plots/test``): predictions, ROC, confusion, reliability and risk–coverage CSVs/PNGs, the
most-confident-mistakes gallery, Grad-CAM grid, embedding map and ``errors.json``; the fitted
temperature to ``calibration_path``; and returns the dict for ``metrics/test.json``. The pure
sections (:func:`calibration_section`, :func:`uncertainty_section`, ``bootstrap.ci_section``,
:func:`error_section`) work on arrays and are tested on their own.

Predictions, accuracy, F1, AUC and the confusion matrix are those of the uncalibrated softmax
(temperature scaling does not change any argmax). Uncertainty scores rank those same
predictions: a sample is an error when its softmax argmax differs from its label.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medclass.config import EvaluateParams, Params
from medclass.data.bundle import DataBundle
from medclass.data.dataset import BatchTransform, make_loader
from medclass.evaluate import ensemble
from medclass.evaluate.bootstrap import ci_section
from medclass.evaluate.calibration import (
    apply_temperature,
    calibration_bins,
    calibration_report,
    calibration_scores,
    nll_from_logits,
    softmax,
)
from medclass.evaluate.error_analysis import (
    most_confident_mistakes,
    per_class_rows,
    top_confused_pairs,
)
from medclass.evaluate.explain import gradcam, penultimate_features, project_2d, sample_per_class
from medclass.evaluate.figures import (
    write_embedding_png,
    write_image_grid_png,
    write_reliability_png,
    write_risk_coverage_png,
)
from medclass.evaluate.metrics import classification_metrics, per_class_roc
from medclass.evaluate.plots import (
    write_confusion_png,
    write_csv,
    write_predictions_csv,
    write_roc_csvs,
)
from medclass.evaluate.uncertainty import (
    aurc,
    error_detection_auroc,
    mc_dropout_probs,
    mutual_information,
    risk_coverage,
)
from medclass.inference import InferConfig, amp_dtype, predict_logits
from medclass.io import atomic_dir, write_json

RELIABILITY_COLUMNS = ("confidence", "accuracy", "count", "lower", "upper")


def calibration_section(
    val_logits: np.ndarray, val_labels: np.ndarray, logits: np.ndarray, labels: np.ndarray,
    n_bins: int, fit: bool,
) -> dict[str, Any]:
    """:func:`calibration_report` (``fit``) or the unscaled scores with T = 1 (no fit).

    Returns ``temperature``, ``fitted_on`` (``"val"``/``None``), ``n_bins``, ``before``,
    ``after`` (ECE, MCE, Brier, NLL of the test split) and the reliability ``rows``.
    """
    if fit:
        rep = calibration_report(val_logits, val_labels, logits, labels, n_bins)
        rows = rep.pop("reliability")
        return {**rep, "fitted_on": "val", "rows": rows}
    scores = calibration_scores(logits, labels, n_bins)
    rows = [{"when": when, **r} for when in ("before", "after")
            for r in calibration_bins(softmax(logits), labels, n_bins)]
    return {"temperature": 1.0, "fitted_on": None, "n_bins": n_bins, "before": scores,
            "after": dict(scores), "rows": rows}


def uncertainty_section(
    probs: np.ndarray, labels: np.ndarray, mc_stack: np.ndarray | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """AURC and error-detection AUROC per uncertainty score, plus per-image scores.

    Scores: ``confidence`` (1 − top-1 softmax probability as the uncertainty), ``entropy`` (of
    the softmax, or of the MC-dropout mean when ``mc_stack`` ``(passes, N, K)`` is given) and,
    with MC dropout, ``mutual_info``. Returns ``(metrics, {score: uncertainty (N,)})``.
    """
    correct = probs.argmax(axis=1) == labels
    scores = {"confidence": 1.0 - probs.max(axis=1)}
    metrics: dict[str, Any] = {"mc_dropout_passes": 0 if mc_stack is None else len(mc_stack)}
    if mc_stack is None:
        scores["entropy"] = ensemble.entropy(probs)
    else:
        mean = mc_stack.mean(axis=0)
        scores["entropy"] = ensemble.entropy(mean)
        scores["mutual_info"] = mutual_information(mc_stack)
        metrics["mc_accuracy"] = float((mean.argmax(axis=1) == labels).mean())
        metrics["mean_mutual_info"] = float(scores["mutual_info"].mean())
    metrics["mean_entropy"] = float(scores["entropy"].mean())
    for name, u in scores.items():
        suffix = "" if name == "confidence" else f"_{name}"
        metrics[f"aurc{suffix}"] = aurc(-u, correct)
        metrics[f"error_auroc{suffix}"] = error_detection_auroc(u, correct)
    return metrics, scores


def error_section(
    probs: np.ndarray, labels: np.ndarray, classes: Sequence[str], confusion: Any,
    paths: Sequence[str], k: int,
) -> tuple[dict[str, Any], np.ndarray]:
    """``errors.json`` content and the indices of the ``k`` most confident mistakes."""
    idx = most_confident_mistakes(probs, labels, k)
    pred = probs.argmax(axis=1)
    mistakes = [{"path": str(paths[i]), "actual": classes[int(labels[i])],
                 "predicted": classes[int(pred[i])], "confidence": float(probs[i, pred[i]])}
                for i in idx]
    errors = {
        "per_class": per_class_rows(probs, labels, classes),
        "top_confused_pairs": top_confused_pairs(confusion, classes, k=5),
        "most_confident_mistakes": mistakes,
        "n_errors": int((pred != labels).sum()),
    }
    return errors, idx


def write_reliability_csvs(out: Path, rows: list[dict[str, Any]]) -> None:
    """``out/{before,after}.csv`` (the non-empty bins) and ``out/ideal.csv`` (the diagonal),
    for DVC's ``reliability`` plot."""
    with atomic_dir(out) as tmp:
        for when in ("before", "after"):
            kept = [r for r in rows if r["when"] == when and r["count"]]
            write_csv(tmp / f"{when}.csv", RELIABILITY_COLUMNS,
                      [[r[c] for c in RELIABILITY_COLUMNS] for r in kept])
        write_csv(tmp / "ideal.csv", ("confidence", "accuracy"), [(0.0, 0.0), (1.0, 1.0)])


def write_risk_coverage(out: Path, scores: dict[str, np.ndarray], correct: np.ndarray,
                         aurcs: dict[str, float]) -> None:
    """``out/<score>.csv`` (``coverage,risk``) per score and ``risk_coverage.png`` beside it."""
    curves = {name: risk_coverage(-u, correct) for name, u in scores.items()}
    with atomic_dir(out) as tmp:
        for name, (cov, risk) in curves.items():
            write_csv(tmp / f"{name}.csv", ("coverage", "risk"), zip(cov, risk, strict=True))
    write_risk_coverage_png(out.with_suffix(".png"), curves, aurcs)


@dataclass
class Evaluation:
    """Everything :func:`evaluate_model` computed, for the report."""

    metrics: dict[str, Any]
    errors: dict[str, Any]
    figures: dict[str, Path] = field(default_factory=dict)
    gradcam_layer: str | None = None
    seconds: float = 0.0


def _predict(model: nn.Module, bundle: DataBundle, split: str, transform: BatchTransform,
             cfg: InferConfig, batch: int, tta: str = "none") -> tuple[np.ndarray, np.ndarray]:
    loader = make_loader(bundle.splits[split], batch, shuffle=False)
    return predict_logits(model, loader, transform, cfg, desc=split, tta=tta)


def evaluate_model(
    model: nn.Module, meta: dict[str, Any], bundle: DataBundle, paths: Sequence[str],
    params: Params, device: torch.device, out: Path, calibration_path: Path,
) -> Evaluation:
    """Run every section on the test split (T fitted on val) and write the files (module doc)."""
    start = time.perf_counter()
    cfg_e: EvaluateParams = params.evaluate
    classes = list(meta["classes"])
    transform = BatchTransform(meta["mean"], meta["std"])
    cfg = InferConfig(device, progress=params.train.progress)
    logits, labels = _predict(model, bundle, "test", transform, cfg, cfg_e.batch_size,
                              cfg_e.tta)
    probs = softmax(logits)
    metrics = classification_metrics(probs, labels, classes)
    confusion = metrics.pop("confusion_matrix")

    fit = cfg_e.temperature_scaling
    val_logits, val_labels = (_predict(model, bundle, "val", transform, cfg, cfg_e.batch_size,
                                       cfg_e.tta) if fit else (logits, labels))
    cal = calibration_section(val_logits, val_labels, logits, labels, cfg_e.n_bins, fit)
    t = float(cal["temperature"])
    write_json(calibration_path, {
        "temperature": t, "fitted_on": cal["fitted_on"], "n_fit": int(len(val_labels)) if fit
        else 0, "method": "temperature scaling: softmax(logits / T), T by L-BFGS on the NLL",
        "model": meta["model"], "classes": classes,
        "val_nll_before": nll_from_logits(val_logits, val_labels) if fit else None,
        "val_nll_after": nll_from_logits(val_logits, val_labels, t) if fit else None,
    })

    mc_stack = None
    if cfg_e.mc_dropout_passes:
        loader = make_loader(bundle.splits["test"], cfg_e.batch_size, shuffle=False)
        mc_stack = mc_dropout_probs(
            model, loader, cfg_e.mc_dropout_passes, device, seed=params.seed,
            transform=functools.partial(transform, train=False),
            amp_dtype=amp_dtype(device, params.train.precision))
    unc, scores = uncertainty_section(probs, labels, mc_stack)
    cis = ci_section(probs, labels, cfg_e.bootstrap, cfg_e.ci, params.seed)

    extra = {"confidence_calibrated": softmax(apply_temperature(logits, t)).max(axis=1)}
    if mc_stack is not None:
        extra.update(entropy=scores["entropy"], mutual_info=scores["mutual_info"])
    write_predictions_csv(out / "predictions.csv", paths, labels, probs, classes, extra)
    write_roc_csvs(out / "roc", per_class_roc(probs, labels, classes))
    figures = {"confusion": out / "confusion.png",
               "confusion_normalised": out / "confusion_normalised.png",
               "reliability": out / "reliability.png", "risk_coverage": out / "risk_coverage.png"}
    write_confusion_png(figures["confusion"], confusion, classes, normalise=False)
    write_confusion_png(figures["confusion_normalised"], confusion, classes, normalise=True)
    write_reliability_csvs(out / "reliability", cal["rows"])
    write_reliability_png(figures["reliability"], cal["rows"], t)
    correct = probs.argmax(axis=1) == labels
    aurcs = {n: unc["aurc" if n == "confidence" else f"aurc_{n}"] for n in scores}
    write_risk_coverage(out / "risk_coverage", scores, correct, aurcs)

    errors, mistakes = error_section(probs, labels, classes, confusion, paths, cfg_e.gallery)
    write_json(out / "errors.json", errors)
    images = bundle.splits["test"].images
    pred = probs.argmax(axis=1)
    if cfg_e.gallery:
        figures["mistakes"] = out / "mistakes.png"
        write_image_grid_png(
            figures["mistakes"], np.asarray(images[mistakes]),
            [f"{classes[labels[i]]} → {classes[pred[i]]}\np = {probs[i, pred[i]]:.2f}"
             for i in mistakes], "most confident mistakes (actual → predicted)")
    layer = None
    if cfg_e.gradcam_per_class:
        idx = sample_per_class(labels, cfg_e.gradcam_per_class, len(classes))
        x = transform(torch.from_numpy(np.asarray(images[idx])).to(device), train=False)
        maps, target, layer = gradcam(model, x)
        figures["gradcam"] = out / "gradcam.png"
        write_image_grid_png(
            figures["gradcam"], np.asarray(images[idx]),
            [f"actual {classes[labels[i]]}\npredicted {classes[c]}"
             for i, c in zip(idx, target, strict=True)],
            f"Grad-CAM of the predicted class; layer: {layer}", heatmaps=maps,
            ncols=max(cfg_e.gradcam_per_class, 4))
    if cfg_e.embedding != "none" and len(labels) >= 3:
        loader = make_loader(bundle.splits["test"], cfg_e.batch_size, shuffle=False)
        feats = penultimate_features(model, lambda: iter(loader),
                                     functools.partial(transform, train=False), device)
        figures["embedding"] = out / "embedding.png"
        write_embedding_png(figures["embedding"], project_2d(feats, cfg_e.embedding, params.seed),
                            labels, pred, classes, cfg_e.embedding)

    metrics["calibration"] = {k: cal[k] for k in ("temperature", "fitted_on", "n_bins", "before",
                                                  "after")}
    metrics["uncertainty"] = unc
    if cis:
        metrics["ci"] = cis
    seconds = time.perf_counter() - start
    logging.info("temperature %.3f: ECE %.4f -> %.4f; AURC %.4f", t, cal["before"]["ece"],
                 cal["after"]["ece"], unc["aurc"])
    return Evaluation(metrics, errors, figures, layer, seconds)
