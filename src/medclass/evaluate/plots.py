"""Plot files shaped for DVC 3's templates: predictions CSV, per-class ROC CSVs, confusion PNG.

Example top-level ``plots:`` section of ``dvc.yaml`` that reads these files::

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

Numbers are written with 6 significant digits (plenty for plotting; metrics are computed from
the in-memory arrays, not from these files).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from medclass.errors import MedclassError
from medclass.io import atomic_dir, atomic_path

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _fmt(value: float) -> str:
    """Format a float compactly for CSV."""
    return f"{float(value):.6g}"


def sanitise_names(class_names: Sequence[str]) -> list[str]:
    """Map class names to unique ``[A-Za-z0-9_-]+`` tokens for column and file names.

    Runs of other characters become ``_``; an empty result becomes ``class<i>``; a clash with an
    earlier name gets ``_<i>`` appended (``i`` = the class index), so the mapping is stable.
    """
    out: list[str] = []
    for i, name in enumerate(class_names):
        token = _UNSAFE.sub("_", str(name)).strip("_") or f"class{i}"
        while token in out:
            token = f"{token}_{i}"
        out.append(token)
    return out


def write_predictions_csv(
    path: str | os.PathLike,
    paths: Sequence[str],
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    extra: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write ``path,actual,predicted,confidence,prob_<class>...[,extra...]`` atomically.

    ``actual``/``predicted`` hold class names (for DVC's ``confusion`` template);
    ``confidence`` is the maximum probability; ``prob_*`` columns use sanitised names;
    ``extra`` maps further column names to ``(N,)`` per-image values appended after them.
    """
    p = np.asarray(probs)
    y = np.asarray(labels)
    k = len(class_names)
    if p.ndim != 2 or p.shape[1] != k:
        raise MedclassError(f"probabilities must have shape (N, {k}), got {p.shape}")
    if not (len(paths) == y.shape[0] == p.shape[0]):
        raise MedclassError(
            f"paths ({len(paths)}), labels ({y.shape[0]}) and probs ({p.shape[0]}) differ in length"
        )
    if y.size and (y.min() < 0 or y.max() >= k):
        raise MedclassError(f"labels must lie in [0, {k - 1}], got range [{y.min()}, {y.max()}]")
    header = ["path", "actual", "predicted", "confidence"]
    header += [f"prob_{token}" for token in sanitise_names(class_names)]
    extras = {name: np.asarray(v) for name, v in (extra or {}).items()}
    for name, values in extras.items():
        if values.shape != (p.shape[0],):
            raise MedclassError(f"column {name} has shape {values.shape}, need ({p.shape[0]},)")
    header += list(extras)
    names = list(class_names)
    pred = p.argmax(axis=1) if p.shape[0] else np.zeros(0, dtype=int)
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for i in range(p.shape[0]):
            row = [str(paths[i]), names[int(y[i])], names[int(pred[i])], _fmt(p[i].max())]
            writer.writerow(row + [_fmt(v) for v in p[i]] + [_fmt(v[i]) for v in extras.values()])


def write_csv(
    path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[object]]
) -> None:
    """Write a CSV atomically; floats get 6 significant digits, ``None`` an empty cell."""

    def cell(v: object) -> str:
        if v is None:
            return ""
        if isinstance(v, (float, np.floating)):
            return _fmt(v)
        return str(v)

    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(list(header))
        writer.writerows([cell(v) for v in row] for row in rows)


def write_roc_csvs(out_dir: str | os.PathLike, roc: dict[str, dict[str, list[float]]]) -> None:
    """Write ``out_dir/<sanitised class>.csv`` (``fpr,tpr,threshold``) per class in ``roc``.

    ``roc`` is :func:`medclass.evaluate.metrics.per_class_roc` output. The folder is rebuilt
    from scratch and swapped in atomically, so files of classes from an earlier run vanish.
    """
    tokens = sanitise_names(list(roc))
    with atomic_dir(out_dir) as tmp:
        for token, curve in zip(tokens, roc.values(), strict=True):
            columns = zip(curve["fpr"], curve["tpr"], curve["threshold"], strict=True)
            with (tmp / f"{token}.csv").open("w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(["fpr", "tpr", "threshold"])
                writer.writerows([_fmt(a), _fmt(b), _fmt(c)] for a, b, c in columns)


def write_confusion_png(
    path: str | os.PathLike,
    cm: Sequence[Sequence[int]] | np.ndarray,
    class_names: Sequence[str],
    normalise: bool = False,
) -> None:
    """Render a confusion matrix (rows = actual, cols = predicted) to a PNG, atomically.

    With ``normalise`` each row is divided by its total (empty rows stay 0) and cells show the
    fraction with the count below it; otherwise cells show counts.
    """
    counts = np.asarray(cm, dtype=np.int64)
    k = len(class_names)
    if counts.shape != (k, k):
        raise MedclassError(f"confusion matrix must be {k}x{k} for {k} classes, got {counts.shape}")
    # Figure + Agg canvas directly: no pyplot global state, no GUI backend needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    totals = counts.sum(axis=1, keepdims=True)
    shown = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    values = shown if normalise else counts.astype(float)

    size = max(4.0, 0.6 * k + 2.5)
    fig = Figure(figsize=(size, size), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    vmax = 1.0 if normalise else max(float(counts.max()), 1.0)
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    font = max(5.0, 10.0 - 0.3 * k)
    for r in range(k):
        for c in range(k):
            text = f"{shown[r, c]:.2f}\n({counts[r, c]})" if normalise else str(counts[r, c])
            colour = "white" if values[r, c] > 0.6 * vmax else "black"
            ax.text(c, r, text, ha="center", va="center", color=colour, fontsize=font)
    ax.set_xticks(range(k), labels=[str(n) for n in class_names], rotation=45, ha="right")
    ax.set_yticks(range(k), labels=[str(n) for n in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("confusion matrix (row-normalised)" if normalise else "confusion matrix")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
