"""``medclass predict``: find images, preprocess them like the split cache, run one or several
exported models, ensemble, and write JSON/CSV results.

Preprocessing per model follows its metadata: ``medclass.data.images.load_image`` (the decoder
the prepare stage uses), conversion to ``channels``, a bilinear squash to ``image_size``² (what
the split stage caches), then ``(x / 255 - mean) / std``. Probabilities are
``softmax(logits / temperature)``; ``mean`` ensembles average them, ``vote`` counts each
model's top-1 class (ties go to the higher mean probability), as in ``evaluate.ensemble``.
``probabilities``/``confidence`` are always the mean (temperature-scaled) probabilities.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from tqdm import tqdm

from medclass.data.images import IMAGE_EXTENSIONS, ImageDecodeError, is_hidden, load_image
from medclass.errors import MedclassError
from medclass.evaluate.ensemble import ensemble_probs, vote_counts
from medclass.export.runtime import SUFFIX_KINDS, Runner, normalise_views
from medclass.io import atomic_path, write_json

EnsembleMode = Literal["mean", "vote"]


def is_model_path(path: Path) -> bool:
    """True for an existing exported artifact (by suffix; ``.mlpackage`` is a folder)."""
    return path.suffix.lower() in SUFFIX_KINDS and (path.is_file() or path.suffix == ".mlpackage")


def split_args(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Leading model artifacts, then the image files/folders."""
    n = 0
    while n < len(paths) and is_model_path(paths[n]):
        n += 1
    models, inputs = list(paths[:n]), list(paths[n:])
    if not models:
        first = paths[0] if paths else "nothing"
        raise MedclassError(f"the first argument must be an exported model, got {first}; "
                            f"usage: medclass predict MODEL... INPUT...")
    if not inputs:
        raise MedclassError("no inputs given; usage: medclass predict MODEL... INPUT...")
    return models, inputs


def discover(inputs: Iterable[Path]) -> list[Path]:
    """Image files under folders (recursive, sorted, no hidden files) plus files named directly."""
    found: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found.extend(sorted(
                f for f in p.rglob("*")
                if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
                and not any(is_hidden(part) for part in f.relative_to(p).parts)))
        else:
            found.append(p)  # named explicitly: tried whatever its suffix (missing → error row)
    return found


def load_array(path: Path, image_size: int, channels: int) -> np.ndarray:
    """uint8 (C, S, S): decode, convert to L/RGB, bilinear squash, like the split cache."""
    if not path.is_file():
        raise ImageDecodeError("file not found")
    img = load_image(path).convert("L" if channels == 1 else "RGB")
    img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Numerically stable ``softmax(logits / temperature)`` over the last axis."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def combine(probs: list[np.ndarray], mode: EnsembleMode
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(ranking scores, mean probabilities, vote fractions or None) of the members' outputs.

    Uses ``medclass.evaluate.ensemble`` (as the kfold stage does): ``vote`` ranks by the
    members' top-1 votes, ties broken by the mean probability.
    """
    mean = ensemble_probs(probs, "mean")
    if mode == "mean" or len(probs) == 1:
        return mean, mean, None
    return ensemble_probs(probs, "vote"), mean, vote_counts(probs) / len(probs)


def check_compatible(runners: Sequence[Runner]) -> list[str]:
    """The shared class list; models with different classes cannot be ensembled."""
    classes = list(runners[0].meta["classes"])
    for r in runners[1:]:
        if list(r.meta["classes"]) != classes:
            raise MedclassError(f"{r.path} has classes {r.meta['classes']}, but "
                                f"{runners[0].path} has {classes}; ensembles need the same classes")
    return classes


def _row(path: Path, classes: list[str], score: np.ndarray, mean: np.ndarray,
         votes: np.ndarray | None, top_k: int) -> dict[str, Any]:
    rank = np.argsort(-score, kind="stable")
    best = int(rank[0])
    row: dict[str, Any] = {
        "path": str(path), "prediction": classes[best], "confidence": float(mean[best]),
        "top_k": [{"class": classes[i], "probability": float(mean[i])} for i in rank[:top_k]],
        "probabilities": {c: float(v) for c, v in zip(classes, mean, strict=True)},
        "error": None,
    }
    if votes is not None:
        row["votes"] = {c: float(v) for c, v in zip(classes, votes, strict=True)}
    return row


def _error_row(path: Path, reason: str) -> dict[str, Any]:
    tqdm.write(f"warning: cannot read {path}: {reason}", file=sys.stderr)  # keeps the bar intact
    return {"path": str(path), "prediction": None, "confidence": None, "top_k": [],
            "probabilities": None, "error": reason}


def _predict_chunk(runners: Sequence[Runner], files: list[Path], classes: list[str],
                   mode: EnsembleMode, top_k: int, tta: str = "none") -> list[dict[str, Any]]:
    arrays: dict[tuple[int, int], dict[Path, np.ndarray]] = {}
    errors: dict[Path, str] = {}
    for key in {(int(r.meta["image_size"]), int(r.meta["channels"])) for r in runners}:
        arrays[key] = {}
        for f in files:
            if f in errors:
                continue
            try:
                arrays[key][f] = load_array(f, *key)
            except (ImageDecodeError, OSError, ValueError) as exc:
                errors[f] = str(exc)
    ok = [f for f in files if f not in errors]
    probs = []
    for r in runners:
        if not ok:
            break
        key = (int(r.meta["image_size"]), int(r.meta["channels"]))
        batch = np.stack([arrays[key][f] for f in ok])
        logits = np.mean([r(v) for v in normalise_views(batch, r.meta, tta)], axis=0)
        probs.append(softmax(logits, float(r.meta["temperature"])))
    index = {f: i for i, f in enumerate(ok)}
    if ok:
        score, mean, votes = combine(probs, mode)
    return [_error_row(f, errors[f]) if f in errors else
            _row(f, classes, score[index[f]], mean[index[f]],
                 None if votes is None else votes[index[f]], top_k)
            for f in files]


def predict(runners: Sequence[Runner], files: Sequence[Path], *, mode: EnsembleMode = "mean",
            top_k: int = 3, batch_size: int = 32, progress: bool = True,
            tta: str = "none") -> list[dict[str, Any]]:
    """One result row per file (``error`` set for unreadable files), in input order.

    ``tta``: each model's logits are averaged over the test-time views (``flip``: the image
    and its mirror; ``flip_rot``: also both rotated ±8°) before the temperature softmax.
    """
    classes = check_compatible(runners)
    mode = mode if len(runners) > 1 else "mean"
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(files), desc="predict", unit="img", disable=not progress,
              file=sys.stderr) as bar:
        for start in range(0, len(files), batch_size):
            chunk = list(files[start:start + batch_size])
            rows.extend(_predict_chunk(runners, chunk, classes, mode, top_k, tta))
            bar.update(len(chunk))
    return rows


def write_results(path: Path, rows: list[dict[str, Any]], header: dict[str, Any]) -> None:
    """``.json``: header + rows; ``.csv``: one line per file with every class probability."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        write_json(path, {**header, "results": rows})
        return
    if suffix != ".csv":
        raise MedclassError(f"--output {path}: use a .json or .csv file name")
    classes = header["classes"]
    fields = ["path", "prediction", "confidence", "top_k", "error"]
    fields += [f"prob_{c}" for c in classes]
    if header["ensemble"] == "vote" and len(header["models"]) > 1:
        fields += [f"votes_{c}" for c in classes]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator=os.linesep)
        writer.writeheader()
        for r in rows:
            out = {k: r.get(k) for k in ("path", "prediction", "confidence", "error")}
            out["top_k"] = ";".join(f"{t['class']}:{t['probability']:.6f}" for t in r["top_k"])
            out.update({f"prob_{c}": (r["probabilities"] or {}).get(c) for c in classes})
            out.update({f"votes_{c}": (r.get("votes") or {}).get(c) for c in classes
                        if f"votes_{c}" in fields})
            writer.writerow(out)


def results_header(runners: Sequence[Runner], mode: EnsembleMode,
                   tta: str = "none") -> dict[str, Any]:
    """Models, their formats and temperatures, the ensemble mode and the class names."""
    return {
        "models": [{"path": str(r.path), "format": r.kind, "model": r.meta["model"],
                    "temperature": float(r.meta["temperature"])} for r in runners],
        "ensemble": mode if len(runners) > 1 else None,
        "tta": tta,
        "classes": list(runners[0].meta["classes"]),
    }


def summary_line(row: dict[str, Any]) -> str:
    """``path  prediction  confidence`` (or the error) for terminal output."""
    if row["error"]:
        return f"{row['path']}\terror: {row['error']}"
    return f"{row['path']}\t{row['prediction']}\t{row['confidence']:.4f}"
