"""The kfold stage's files: per-fold training curves and the test ensemble's predictions."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medclass.evaluate.plots import sanitise_names
from medclass.io import atomic_path

CURVE_KEYS: tuple[str, ...] = ("train_loss", "val_loss", "train_acc", "val_acc", "val_auc",
                               "val_f1")


def write_curves(out_dir: Path, records: Sequence[dict[str, Any]]) -> None:
    """``out_dir/fold_<i>.csv``: one row per epoch of head then finetune (a DVC plot per fold)."""
    for rec in records:
        rows = [(ph, r) for ph in ("head", "finetune") for r in rec["history"][ph]]
        with atomic_path(out_dir / f"fold_{rec['fold']}.csv") as tmp, \
                tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["step", "phase", "epoch", *CURVE_KEYS])
            for step, (ph, r) in enumerate(rows):
                values = ["" if r.get(k) is None else f"{r[k]:.6g}" for k in CURVE_KEYS]
                writer.writerow([step, ph, r["epoch"] + 1, *values])


def write_ensemble_csv(path: Path, paths: Sequence[str], labels: np.ndarray,
                       preds: dict[str, np.ndarray], mean: np.ndarray, variance: np.ndarray,
                       mi: np.ndarray, classes: Sequence[str]) -> None:
    """path, actual, predicted (first method), predicted_<method>…, prob_<class>… (mean
    ensemble), variance, mutual_information."""
    methods = list(preds)
    header = ["path", "actual", "predicted", *(f"predicted_{m}" for m in methods),
              *(f"prob_{t}" for t in sanitise_names(classes)), "variance", "mutual_information"]
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for i in range(len(labels)):
            named = [classes[int(preds[m][i])] for m in methods]
            writer.writerow([paths[i], classes[int(labels[i])], named[0], *named,
                             *(f"{v:.6g}" for v in mean[i]), f"{variance[i]:.6g}",
                             f"{mi[i]:.6g}"])
