"""Ingest ``data.source`` into a validated manifest (``raw_manifest.py``), without copying a
user's images: a folder tree (flat classes or ``train/ val/ test/``, DICOM included), a CSV of
labels, a MedMNIST ``.npz`` (by path or by name) or a Kaggle download.

Generated sources have no files of their own to point at, so their images are written once as
8-bit PNGs under ``out_dir/images`` (synthetic, npz, medmnist) or copied byte for byte there
(kaggle: the download lives outside the repository), and DVC versions them as prepare's output.
A user's folder or CSV source is versioned by the user (``dvc add``) and read in place.

Written atomically under ``out_dir`` (a failed run leaves a previous one untouched):
``manifest.csv``, ``source.json``, ``classes.json`` and, for folder sources, ``metadata.csv``
(``data.metadata`` columns for ``split.group_by``).
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medclass.config import DataParams
from medclass.data import kaggle_source, medmnist_source, synthetic
from medclass.data.csv_source import list_csv
from medclass.data.folder_source import list_folder
from medclass.data.ingest import MIN_SIDE, Candidate, validate
from medclass.data.layout import SPLIT_ORDER, detect_layout
from medclass.data.metadata import write_raw_metadata
from medclass.data.raw_manifest import (
    CLASSES_FILE,
    IMAGES_DIR,
    MANIFEST_FILE,
    SOURCE_FILE,
    write_raw_manifest,
)
from medclass.errors import MedclassError
from medclass.io import atomic_dir, disk_error, write_json

__all__ = ["MIN_SIDE", "SOURCES", "IngestError", "prepare_raw", "safe_class_name"]

NPZ_SPLITS = ("train", "val", "test")
_UNSAFE_CLASS = re.compile(r'[\x00-\x1f/\\:*?"<>|]')


class IngestError(MedclassError):
    """A dataset-level problem found after ingesting every file; ``report`` is the full data
    report (the prepare stage still writes it, so excluded files and their reasons show)."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


def safe_class_name(name: str) -> str:
    """Make a class name usable as one folder name (no separators, no ``..``, not hidden)."""
    safe = _UNSAFE_CLASS.sub("_", str(name)).strip().strip(".").strip()
    if not safe:
        raise MedclassError(
            f"class name {name!r} is empty after sanitising; use letters, digits or '_'"
        )
    return safe


def _safe_class_names(names: list[str]) -> list[str]:
    safe = [safe_class_name(n) for n in names]
    seen: dict[str, str] = {}
    for orig, s in zip(names, safe, strict=True):
        if s.lower() in seen:
            raise MedclassError(
                f"class names {seen[s.lower()]!r} and {orig!r} clash as folder names; rename one"
            )
        seen[s.lower()] = orig
    return safe


@dataclass
class Listing:
    """A source's files before validation: root, class names (label order), candidates."""

    root: Path
    classes: list[str]
    candidates: list[Candidate]
    layout: str = "classes"
    ignored: list[dict[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    copy: bool = False  # keep the validated files under out_dir/images (root outside the repo)


def _split_counts(rows: list, classes: list[str]) -> dict[str, dict[str, int]] | None:
    counts: Counter = Counter((r.split, r.class_name) for r in rows)
    splits = [s for s in SPLIT_ORDER if any(k[0] == s for k in counts)]
    if not splits:
        return None
    return {s: {c: counts[(s, c)] for c in classes} for s in splits}


def _report(source: str, listing: Listing, rows: list, excluded: list[dict[str, str]],
            modes: Counter) -> dict[str, Any]:
    counts = Counter(r.class_name for r in rows)
    classes = listing.classes
    return {
        "source": source,
        "layout": listing.layout,
        "n_images": len(rows),
        "n_classes": len(classes),
        "classes": {c: counts[c] for c in classes},
        "splits": _split_counts(rows, classes),
        "n_excluded": len(excluded),
        "excluded": excluded,
        "n_ignored": len(listing.ignored),
        "ignored": listing.ignored,
        "modes": dict(sorted(modes.items())),
        **listing.extra,
    }


def _save_png(img: Image.Image, path: Path) -> None:
    try:
        img.save(path, format="PNG")
    except OSError as exc:
        if disk_error(exc) is not None:
            raise  # atomic_dir turns it into one line naming the output folder
        raise MedclassError(f"cannot write {path}: {exc}; check free space/permissions") from exc


# ---------------------------------------------------------------- synthetic


def _list_synthetic(data: DataParams, seed: int, tmp: Path) -> Listing:
    params = data.synthetic
    classes = _safe_class_names(list(params.classes))
    images = tmp / IMAGES_DIR
    for c in classes:
        (images / c).mkdir(parents=True)
    candidates = []
    for name, index, arr in synthetic.generate(params, seed):
        folder = classes[params.classes.index(name)]
        rel = f"{folder}/{folder}_{index:05d}.png"
        _save_png(Image.fromarray(arr, "L"), images / rel)
        candidates.append(Candidate(rel, folder))
    order = {c: i for i, c in enumerate(classes)}  # label then name, as split lists them
    return Listing(images, classes,
                   sorted(candidates, key=lambda c: (order[c.class_name], c.path)))


# ---------------------------------------------------------------- folder, csv


def _ordered_classes(names: list[str], data: DataParams, root: Path) -> list[str]:
    """Sorted folder names, or ``data.class_names`` order when given (must match exactly)."""
    if data.class_names is None:
        return names
    if sorted(data.class_names) != sorted(names):
        raise MedclassError(
            f"data.class_names {data.class_names} do not match the class folders {names} in "
            f"{root}; fix data.class_names or remove it"
        )
    return list(data.class_names)


def _list_folder(data: DataParams, seed: int, tmp: Path) -> Listing:
    root = Path(data.path)
    layout = detect_layout(root, data.layout)
    names = layout.classes
    if len(names) < 2:
        where = f"'{root}'" if layout.kind == "classes" else "each split folder"
        raise MedclassError(
            f"{where} has {len(names)} class folder(s) ({', '.join(names) or 'none'}); need at "
            "least 2 (one per class); point data.path at the folder holding them"
        )
    ignored = list(layout.ignored)
    candidates = list_folder(root, layout, ignored)
    extra = {"split_folders": layout.split_folders} if layout.kind == "splits" else {}
    return Listing(root, _ordered_classes(names, data, root), candidates, layout.kind,
                   ignored, extra)


def _list_csv(data: DataParams, seed: int, tmp: Path) -> Listing:
    ignored: list[dict[str, str]] = []
    listing = list_csv(data, ignored)
    classes = _safe_class_names(listing.classes)
    rename = dict(zip(listing.classes, classes, strict=True))
    candidates = [Candidate(c.path, rename[c.class_name], c.split, c.group)
                  for c in listing.candidates]
    return Listing(Path(data.path), classes, candidates, "csv", ignored, {"csv": listing.report})


# ---------------------------------------------------------------- npz


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise MedclassError(f"npz file '{path}' not found; set data.path to a MedMNIST .npz file")
    keys = [f"{s}_{k}" for s in NPZ_SPLITS for k in ("images", "labels")]
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise MedclassError(
                    f"npz file '{path}' lacks {', '.join(missing)}; expected MedMNIST format"
                )
            return {k: npz[k] for k in keys}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise MedclassError(
            f"cannot read npz file '{path}' ({type(exc).__name__}); re-download the file"
        ) from exc


def _check_npz_split(path: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    shape_ok = images.ndim == 3 or (images.ndim == 4 and images.shape[-1] in (1, 3))
    if not shape_ok or min(images.shape[1:3], default=0) < 1:
        raise MedclassError(
            f"npz '{path}': {split}_images has shape {images.shape}; expected (N,H,W) or (N,H,W,3)"
        )
    if images.dtype != np.uint8:
        raise MedclassError(
            f"npz '{path}': {split}_images has dtype {images.dtype}; expected uint8 (0..255)"
        )
    if not (labels.ndim == 1 or (labels.ndim == 2 and labels.shape[1] == 1)):
        raise MedclassError(
            f"npz '{path}': {split}_labels has shape {labels.shape}; expected (N,1) "
            "(multi-label data is not supported)"
        )
    if labels.shape[0] != images.shape[0]:
        raise MedclassError(
            f"npz '{path}': {split} has {images.shape[0]} images but {labels.shape[0]} labels; "
            "fix the file"
        )
    if labels.size and (labels.dtype.kind not in "iu" or labels.min() < 0):
        raise MedclassError(
            f"npz '{path}': {split}_labels must be non-negative integers; fix the file"
        )


def _npz_classes(data: DataParams, path: Path, values: list[int]) -> list[str]:
    if len(values) < 2:
        raise MedclassError(f"npz '{path}' has {len(values)} distinct label(s); need at least 2")
    if data.class_names is None:
        return [f"class_{i}" for i in range(len(values))]
    if len(data.class_names) != len(values):
        raise MedclassError(
            f"data.class_names has {len(data.class_names)} names but '{path}' has "
            f"{len(values)} distinct labels; give exactly {len(values)} names"
        )
    return _safe_class_names(list(data.class_names))


def _list_npz(data: DataParams, seed: int, tmp: Path) -> Listing:
    path = Path(data.path)
    arrays = _load_npz(path)
    for split in NPZ_SPLITS:
        _check_npz_split(path, split, arrays[f"{split}_images"], arrays[f"{split}_labels"])
    values = sorted({int(v) for s in NPZ_SPLITS for v in arrays[f"{s}_labels"].reshape(-1)})
    classes = _npz_classes(data, path, values)
    index = {v: i for i, v in enumerate(values)}
    images_dir = tmp / IMAGES_DIR
    for c in classes:
        (images_dir / c).mkdir(parents=True)
    candidates: list[Candidate] = []
    for split in NPZ_SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"].reshape(-1)
        for i in range(images.shape[0]):
            arr = images[i]
            if arr.ndim == 3 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            folder = classes[index[int(labels[i])]]
            rel = f"{folder}/{split}_{i:05d}.png"
            _save_png(Image.fromarray(np.ascontiguousarray(arr), "L" if arr.ndim == 2 else "RGB"),
                      images_dir / rel)
            candidates.append(Candidate(rel, folder, split))
    return Listing(images_dir, classes, candidates, "npz")


# ---------------------------------------------------------------- medmnist, kaggle


def _list_medmnist(data: DataParams, seed: int, tmp: Path) -> Listing:
    """The official file (found or downloaded by ``medmnist_source``), read as an npz."""
    npz_data, info = medmnist_source.resolve(data)
    listing = _list_npz(npz_data, seed, tmp)
    listing.extra["medmnist"] = info
    return listing


def _copy_file(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # same bytes, no second copy where the filesystem allows it
    except OSError:
        shutil.copy2(src, dst)


def _list_kaggle(data: DataParams, seed: int, tmp: Path) -> Listing:
    """The download (``kaggle_source``) read as a folder source; its files are copied byte for
    byte under ``images/`` because kagglehub's cache is outside the repository."""
    folder_data, info = kaggle_source.resolve(data)
    listing = _list_folder(folder_data, seed, tmp)
    listing.extra["kaggle"] = info
    listing.copy = True
    return listing


# ---------------------------------------------------------------- entry point

_List = Callable[[DataParams, int, Path], Listing]
SOURCES: dict[str, _List] = {
    "synthetic": _list_synthetic,
    "folder": _list_folder,
    "csv": _list_csv,
    "npz": _list_npz,
    "medmnist": _list_medmnist,
    "kaggle": _list_kaggle,
}
"""``data.source`` -> its lister: ``(data, seed, tmp) -> Listing`` (files not yet decoded)."""


def _recorded_root(listing: Listing, tmp: Path) -> str | None:
    """``data.path`` for a user's tree; None for images kept in ``out_dir/images``."""
    return None if listing.root == tmp / IMAGES_DIR else listing.root.as_posix()


def _check_classes(rows: list, listing: Listing, report: dict[str, Any]) -> None:
    empty = [c for c in listing.classes if report["classes"][c] == 0]
    if empty:
        more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
        raise IngestError(
            f"class '{empty[0]}'{more} has no readable images; add images or remove the class",
            report,
        )
    for split, counts in (report["splits"] or {}).items():
        missing = [c for c, n in counts.items() if n == 0]
        if missing and any(r.split for r in rows):
            raise IngestError(
                f"the {split} split has no readable images of class '{missing[0]}'; add some "
                "or set split.use_predefined: false to split the pooled images", report,
            )


def prepare_raw(data: DataParams, seed: int, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Ingest ``data`` into ``out_dir`` (atomically) and return the data report."""
    lister = SOURCES.get(data.source)
    if lister is None:  # pragma: no cover - DataParams validation forbids other values
        raise MedclassError(
            f"data.source '{data.source}' is unknown; use one of: {', '.join(SOURCES)}"
        )
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        listing = lister(data, seed, tmp)
        rows, excluded, modes = validate(listing.root, listing.candidates, listing.classes)
        report = _report(data.source, listing, rows, excluded, modes)
        report["root"] = _recorded_root(listing, tmp)
        _check_classes(rows, listing, report)
        if data.source in ("folder", "kaggle"):
            kept = [(r.path, r.path) for r in rows]
            write_raw_metadata(tmp, listing.root, data.metadata, kept,
                               {e["path"] for e in excluded})
        if listing.copy:
            for r in rows:
                _copy_file(listing.root / r.path, tmp / IMAGES_DIR / r.path)
            listing.root = tmp / IMAGES_DIR
            report["root"] = None
        write_raw_manifest(tmp / MANIFEST_FILE, rows)
        write_json(tmp / SOURCE_FILE, {"source": data.source, "root": report["root"],
                                       "layout": listing.layout})
        write_json(tmp / CLASSES_FILE, {"classes": listing.classes})
    return report
