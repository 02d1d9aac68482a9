"""evaluate: the best checkpoint on the test split → metrics with CIs, calibration (T fitted on
val), uncertainty, error analysis, Grad-CAM, embedding and the model card (README "Reading the
evaluation"); then the same model on each ``evaluate.external`` set (domain shift)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medclass.config import Params
from medclass.data.bundle import load_data
from medclass.data.dataset import BatchTransform, CachedDataset, make_loader
from medclass.data.external import list_external, load_external
from medclass.data.split import read_manifest
from medclass.evaluate.clinical import evaluate_model
from medclass.evaluate.external import difference, score_external
from medclass.inference import InferConfig, predict_logits, resolve_device
from medclass.io import load_checkpoint, read_json, write_json, write_text
from medclass.models.rebuild import model_from_checkpoint
from medclass.report.model_card import write_report
from medclass.stages._common import (
    METRICS_DIR,
    MODELS_DIR,
    PLOTS_DIR,
    SPLIT_DIR,
    repro_tag,
    run_stage,
)

OUT = PLOTS_DIR / "test"
REPORT = PLOTS_DIR / "report.html"
CALIBRATION = MODELS_DIR / "calibration.json"


def score_external_sets(params: Params, model: nn.Module, meta: dict[str, Any],
                        device: torch.device, test: dict[str, Any]) -> dict[str, Any]:
    """``external.<name>`` of metrics/test.json: each set decoded at the training size
    (data/split/stats.json), predicted like the test split (same normalisation and TTA),
    scored with the val-fitted temperature and compared with the test split ``test``."""
    cfg_e, stats = params.evaluate, read_json(SPLIT_DIR / "stats.json")
    transform = BatchTransform(meta["mean"], meta["std"])
    cfg = InferConfig(device, progress=params.train.progress)
    temperature = float(test["calibration"]["temperature"])
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="medclass-external-") as work:
        for spec in cfg_e.external:
            data = load_external(spec, meta["classes"], int(stats["image_size"]),
                                 int(stats["channels"]), Path(work))
            loader = make_loader(CachedDataset(data.images, data.labels), cfg_e.batch_size,
                                 shuffle=False)
            logits, labels = predict_logits(model, loader, transform, cfg, desc=spec.name,
                                            tta=cfg_e.tta)
            scores = score_external(logits, labels, meta["classes"], temperature,
                                    n_bins=cfg_e.n_bins, resamples=cfg_e.bootstrap,
                                    level=cfg_e.ci, seed=params.seed)
            out[spec.name] = {**data.summary(), **scores, "vs_test": difference(scores, test)}
            logging.info("external %s: %d images, accuracy %.4f (%+.4f vs test), macro F1 %.4f",
                         spec.name, len(labels), scores["accuracy"],
                         out[spec.name]["vs_test"]["accuracy"], scores["f1_macro"])
            del data, loader  # release the memory map before the folder goes
    return out


def main(params: Params) -> None:
    ckpt = load_checkpoint(MODELS_DIR / "model.pt")
    meta = ckpt["meta"]
    data = load_data(SPLIT_DIR, ("val", "test"))
    device = resolve_device(params.train.device)
    model = model_from_checkpoint(ckpt).to(device)
    for spec in params.evaluate.external:  # a wrong path or class fails before the long part
        list_external(spec, meta["classes"], [])
    paths = [r.path for r in read_manifest(SPLIT_DIR / "manifest.csv") if r.split == "test"]
    result = evaluate_model(model, meta, data, paths, params, device, OUT, CALIBRATION)
    metrics = {"model": meta["model"], "best_epoch": meta["epoch"] + 1, **result.metrics}
    if params.evaluate.external:
        metrics["external"] = score_external_sets(params, model, meta, device, metrics)
    write_json(METRICS_DIR / "test.json", {**metrics, "repro": repro_tag(params)})
    if params.evaluate.report:
        write_report(REPORT, meta=meta, stats=read_json(SPLIT_DIR / "stats.json"),
                     metrics=metrics, errors=result.errors, figures=result.figures,
                     n_params=sum(p.numel() for p in model.parameters()),
                     gradcam_layer=result.gradcam_layer,
                     evaluate_params=params.evaluate.model_dump())
    else:  # a declared DVC output: leave a stub rather than a stale card
        write_text(REPORT, "<!DOCTYPE html><title>medclass</title>"
                           "<p>Model card off (evaluate.report: false).</p>\n")
    ci = metrics.get("ci", {}).get("accuracy")
    band = f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci and ci["low"] is not None else ""
    logging.info("test accuracy %.4f%s, macro F1 %.4f, AUC %s; %.1fs", metrics["accuracy"], band,
                 metrics["f1_macro"], metrics["auc"], result.seconds)


if __name__ == "__main__":
    run_stage("evaluate", main)
