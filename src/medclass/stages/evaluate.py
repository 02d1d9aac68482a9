"""evaluate: the best checkpoint on the test split → metrics with CIs, calibration (T fitted on
val), uncertainty, error analysis, Grad-CAM, embedding and the model card (README "Reading the
evaluation")."""

from __future__ import annotations

import logging

from medclass.config import Params
from medclass.data.split import read_manifest
from medclass.evaluate.clinical import evaluate_model
from medclass.io import load_checkpoint, read_json, write_json, write_text
from medclass.report.model_card import write_report
from medclass.stages._common import METRICS_DIR, MODELS_DIR, PLOTS_DIR, SPLIT_DIR, run_stage
from medclass.train.context import load_data, model_from_checkpoint, resolve_device

OUT = PLOTS_DIR / "test"
REPORT = PLOTS_DIR / "report.html"
CALIBRATION = MODELS_DIR / "calibration.json"


def main(params: Params) -> None:
    ckpt = load_checkpoint(MODELS_DIR / "model.pt")
    meta = ckpt["meta"]
    data = load_data(SPLIT_DIR, ("val", "test"))
    device = resolve_device(params.train.device)
    model = model_from_checkpoint(ckpt).to(device)
    paths = [r.path for r in read_manifest(SPLIT_DIR / "manifest.csv") if r.split == "test"]
    result = evaluate_model(model, meta, data, paths, params, device, OUT, CALIBRATION)
    metrics = {"model": meta["model"], "best_epoch": meta["epoch"] + 1, **result.metrics}
    write_json(METRICS_DIR / "test.json", metrics)
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
