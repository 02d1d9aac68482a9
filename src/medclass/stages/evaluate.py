"""evaluate: the best checkpoint on the test split → metrics, predictions, confusion, ROC."""

from __future__ import annotations

import logging

import torch

from medclass.config import Params
from medclass.data.dataset import BatchTransform, make_loader
from medclass.data.split import read_manifest
from medclass.evaluate.metrics import classification_metrics, per_class_roc
from medclass.evaluate.plots import write_confusion_png, write_predictions_csv, write_roc_csvs
from medclass.io import load_checkpoint, write_json
from medclass.stages._common import METRICS_DIR, MODELS_DIR, PLOTS_DIR, SPLIT_DIR, run_stage
from medclass.train.context import load_data, model_from_checkpoint, resolve_device
from medclass.train.engine import StepConfig, predict_logits

OUT = PLOTS_DIR / "test"


def main(params: Params) -> None:
    ckpt = load_checkpoint(MODELS_DIR / "model.pt")
    meta = ckpt["meta"]
    data = load_data(SPLIT_DIR, ("test",))
    device = resolve_device(params.train.device)
    model = model_from_checkpoint(ckpt).to(device)
    cfg = StepConfig(device, progress=params.train.progress)
    loader = make_loader(data.splits["test"], params.evaluate.batch_size, shuffle=False)
    logits, labels = predict_logits(model, loader, BatchTransform(meta["mean"], meta["std"]), cfg,
                                    desc="test")
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    classes = meta["classes"]
    metrics = classification_metrics(probs, labels, classes)
    paths = [r.path for r in read_manifest(SPLIT_DIR / "manifest.csv") if r.split == "test"]
    write_predictions_csv(OUT / "predictions.csv", paths, labels, probs, classes)
    write_roc_csvs(OUT / "roc", per_class_roc(probs, labels, classes))
    cm = metrics.pop("confusion_matrix")
    write_confusion_png(OUT / "confusion.png", cm, classes, normalise=False)
    write_confusion_png(OUT / "confusion_normalised.png", cm, classes, normalise=True)
    write_json(METRICS_DIR / "test.json", {"model": meta["model"], "best_epoch": meta["epoch"] + 1,
                                           **metrics})
    logging.info("test accuracy %.4f, macro F1 %.4f, AUC %s", metrics["accuracy"],
                 metrics["f1_macro"], metrics["auc"])


if __name__ == "__main__":
    run_stage("evaluate", main)
