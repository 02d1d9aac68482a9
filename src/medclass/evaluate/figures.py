"""PNG figures of the evaluation: reliability, risk–coverage, mistakes, Grad-CAM, embedding.

All figures use matplotlib's ``Figure`` + Agg canvas (no pyplot state, no GUI backend) and are
written atomically. Images are uint8 ``(N, C, H, W)`` arrays as cached by the split stage.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medclass.io import atomic_path

Curve = tuple[np.ndarray, np.ndarray]


def new_figure(width: float, height: float, layout: str | None = None) -> Any:
    """A 100-dpi matplotlib Figure on the Agg canvas (no pyplot state, safe in threads)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, path: str | os.PathLike) -> None:
    """Write ``fig`` as PNG atomically (a failed save leaves no partial file)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _show(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """A ``(C, H, W)`` uint8 image as something ``imshow`` draws (gray or RGB) and its cmap."""
    img = np.asarray(image)
    if img.shape[0] == 1:
        return img[0], "gray"
    return np.moveaxis(img[:3], 0, -1), None


def _grid(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return -(-n // ncols), ncols


def write_reliability_png(
    path: str | os.PathLike,
    rows: Sequence[Mapping[str, Any]],
    temperature: float,
) -> None:
    """Reliability diagram: per-bin accuracy vs confidence, before/after temperature scaling.

    ``rows`` are :func:`medclass.evaluate.calibration.calibration_report` rows (``when``,
    ``lower``, ``upper``, ``count``, ``confidence``, ``accuracy``); empty bins are skipped.
    Below: how many test images fall in each bin (before scaling).
    """
    fig = new_figure(5.0, 6.0)
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    styles = {"before": ("tab:red", "before (T = 1)"),
              "after": ("tab:blue", f"after (T = {temperature:.3g})")}
    for when, (colour, label) in styles.items():
        kept = [r for r in rows if r["when"] == when and r["count"]]
        if not kept:
            continue
        conf = [r["confidence"] for r in kept]
        acc = [r["accuracy"] for r in kept]
        ax.plot(conf, acc, marker="o", color=colour, label=label)
    before = [r for r in rows if r["when"] == "before"]
    hist.bar([(r["lower"] + r["upper"]) / 2 for r in before], [r["count"] for r in before],
             width=[r["upper"] - r["lower"] for r in before], color="tab:red", alpha=0.6,
             edgecolor="white")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy in bin",
           title="reliability diagram (test split)")
    ax.legend(loc="upper left", fontsize=8)
    hist.set(xlabel="confidence (top-1 probability)", ylabel="images")
    fig.tight_layout()
    save_png(fig, path)


def write_risk_coverage_png(
    path: str | os.PathLike, curves: Mapping[str, Curve], aurcs: Mapping[str, float]
) -> None:
    """Selective risk vs coverage, one line per uncertainty score, AURC in the legend."""
    fig = new_figure(5.5, 4.0)
    ax = fig.add_subplot()
    for name, (coverage, risk) in curves.items():
        # risk[i] holds on (coverage[i-1], coverage[i]]: the step integral that AURC sums
        ax.step(np.r_[0.0, coverage], np.r_[risk[:1], risk], where="pre",
                label=f"{name} (AURC {aurcs[name]:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, None), xlabel="coverage (fraction of images kept)",
           ylabel="risk (error rate among kept)", title="risk–coverage (test split)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


def write_image_grid_png(
    path: str | os.PathLike,
    images: np.ndarray,
    titles: Sequence[str],
    title: str,
    heatmaps: np.ndarray | None = None,
    ncols: int = 8,
) -> None:
    """Images in a grid with a caption each; ``heatmaps`` ``(N, H, W)`` in [0, 1] overlaid."""
    n = len(images)
    if n == 0:
        fig = new_figure(4.0, 1.0)
        fig.text(0.5, 0.5, f"{title}: none", ha="center", va="center")
        save_png(fig, path)
        return
    nrows, ncols = _grid(n, ncols)
    fig = new_figure(1.7 * ncols, 2.0 * nrows + 0.5, layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i >= n:
            continue
        img, cmap = _show(images[i])
        ax.imshow(img, cmap=cmap, vmin=0, vmax=255)
        if heatmaps is not None:
            ax.imshow(heatmaps[i], cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0,
                      interpolation="bilinear")
        ax.set_title(titles[i], fontsize=7)
    fig.suptitle(textwrap.fill(title, max(30, 14 * ncols)), fontsize=9)
    save_png(fig, path)


def write_embedding_png(
    path: str | os.PathLike,
    xy: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    class_names: Sequence[str],
    method: str,
) -> None:
    """2-D embedding scatter coloured by actual class; misclassified images marked with ×."""
    fig = new_figure(5.5, 4.5)
    ax = fig.add_subplot()
    wrong = np.asarray(labels) != np.asarray(predicted)
    for c, name in enumerate(class_names):
        colour = f"C{c % 10}"
        ok = (labels == c) & ~wrong
        bad = (labels == c) & wrong
        ax.scatter(xy[ok, 0], xy[ok, 1], s=14, color=colour, label=str(name))
        ax.scatter(xy[bad, 0], xy[bad, 1], s=40, color=colour, marker="x")
    ax.set(title=f"penultimate features, {method.upper()} (× = misclassified)",
           xlabel=f"{method} 1", ylabel=f"{method} 2")
    ax.legend(fontsize=7, markerscale=1.2)
    fig.tight_layout()
    save_png(fig, path)
