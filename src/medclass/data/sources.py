"""Materialise raw data (synthetic, class-per-folder tree, MedMNIST .npz, a MedMNIST dataset
by name, a Kaggle dataset) as 8-bit PNGs. Folder trees may hold DICOM files (``dicom.py``).

Output layout (written atomically; a failed run leaves a previous ``out_dir`` untouched)::

    out_dir/<class>/<name>.png      mode L or RGB
    out_dir/classes.json            {"classes": [names in label order]}
    out_dir/predefined_split.csv    path,split  (npz/medmnist only: the official split)
    out_dir/metadata.csv            path,source_path,<data.metadata columns>  (folder/kaggle)

Class names are sanitised (``safe_class_name``) so they are safe folder names; the sanitised
names are what ``classes.json`` lists.
"""

from __future__ import annotations

import csv
import os
import re
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medclass.config import DataParams
from medclass.data import kaggle_source, medmnist_source, synthetic
from medclass.data.dicom import decode_dicom, is_dicom
from medclass.data.images import IMAGE_EXTENSIONS, ImageDecodeError, decode_image, is_hidden
from medclass.data.metadata import write_raw_metadata
from medclass.errors import MedclassError
from medclass.io import atomic_dir, disk_error, write_json

NPZ_SPLITS = ("train", "val", "test")
MIN_SIDE = 4
"""Folder source: images narrower or shorter than this (px) are excluded as too small. A 1x1
or 1-px-wide image is a single colour or a line, not a scan; upscaling it to the training size
would only add a constant image to the class. Anything from 4x4 up is kept (split resizes it)."""
_UNSAFE_CLASS = re.compile(r'[\x00-\x1f/\\:*?"<>|]')
_UNSAFE_FILE = re.compile(r"[^A-Za-z0-9._-]+")


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


def _report(source: str, classes: list[str], counts: Counter, modes: Counter,
            excluded: list[dict[str, str]], ignored: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "source": source,
        "n_images": sum(counts.values()),
        "n_classes": len(classes),
        "classes": {c: counts[c] for c in classes},
        "n_excluded": len(excluded),
        "excluded": excluded,
        "n_ignored": len(ignored),
        "ignored": ignored,
        "modes": dict(sorted(modes.items())),
    }


def _save_png(img: Image.Image, path: Path) -> None:
    try:
        img.save(path, format="PNG")
    except OSError as exc:
        if disk_error(exc) is not None:
            raise  # atomic_dir turns it into one line naming the output folder
        raise MedclassError(f"cannot write {path}: {exc}; check free space/permissions") from exc


# ---------------------------------------------------------------- synthetic


def _prepare_synthetic(data: DataParams, seed: int, tmp: Path) -> tuple[list[str], dict]:
    params = data.synthetic
    classes = _safe_class_names(list(params.classes))
    for c in classes:
        (tmp / c).mkdir()
    counts: Counter = Counter()
    for name, index, arr in synthetic.generate(params, seed):
        folder = classes[params.classes.index(name)]
        _save_png(Image.fromarray(arr, "L"), tmp / folder / f"{folder}_{index:05d}.png")
        counts[folder] += 1
    return classes, _report("synthetic", classes, counts, Counter({"L": counts.total()}), [], [])


# ---------------------------------------------------------------- folder


def _output_stem(rel: Path) -> str:
    """``sub/dir/img 1.jpg`` -> ``sub__dir__img_1`` (safe ASCII, never empty or hidden)."""
    parts = [*rel.parent.parts, rel.stem]
    stem = "__".join(_UNSAFE_FILE.sub("_", p) for p in parts).lstrip(".") or "image"
    return stem[:150]


def _class_dirs(root: Path, ignored: list[dict[str, str]]) -> list[Path]:
    dirs = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if is_hidden(entry):
            ignored.append({"path": entry.name, "reason": "hidden"})
        elif entry.is_symlink() and entry.is_dir():
            ignored.append({"path": entry.name, "reason": "symlinked folder not followed"})
        elif entry.is_dir():
            dirs.append(entry)
        else:
            ignored.append({"path": entry.name, "reason": "file outside any class folder"})
    return dirs


def _walk_images(class_dir: Path, root: Path, ignored: list[dict[str, str]]) -> list[Path]:
    """Image-extension and DICOM files below ``class_dir`` (sorted, no symlinked dirs, no
    hidden)."""
    found: list[Path] = []

    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix()

    def on_error(err: OSError) -> None:
        where = Path(err.filename) if err.filename else class_dir
        ignored.append({"path": rel(where), "reason": f"unreadable folder ({err.strerror})"})

    for dirpath, dirnames, filenames in os.walk(class_dir, onerror=on_error, followlinks=False):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if is_hidden(d):
                ignored.append({"path": rel(here / d), "reason": "hidden"})
            elif (here / d).is_symlink():
                ignored.append({"path": rel(here / d), "reason": "symlinked folder not followed"})
            else:
                keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            path = here / f
            if is_hidden(f):
                ignored.append({"path": rel(path), "reason": "hidden"})
            elif path.suffix.lower() in IMAGE_EXTENSIONS or is_dicom(path):
                found.append(path)
            else:
                ignored.append({"path": rel(path), "reason": "not an image file extension"})
    return found


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


def _prepare_folder(data: DataParams, tmp: Path) -> tuple[list[str], dict]:
    root = Path(data.path)
    if not root.exists():
        raise MedclassError(
            f"data.path '{root}' does not exist; point data.path at a folder of class subfolders"
        )
    if not root.is_dir():
        raise MedclassError(f"data.path '{root}' is not a folder; use one subfolder per class")
    ignored: list[dict[str, str]] = []
    excluded: list[dict[str, str]] = []
    dirs = {d.name: d for d in _class_dirs(root, ignored)}
    if len(dirs) < 2:
        raise MedclassError(
            f"data.path '{root}' has {len(dirs)} class folder(s); need at least 2 (one per class)"
        )
    names = _ordered_classes(sorted(dirs), data, root)
    classes = _safe_class_names(names)
    counts: Counter = Counter()
    modes: Counter = Counter()
    empty: list[str] = []
    sources: list[tuple[str, str]] = []  # (raw path, source path relative to data.path)
    for name, folder in zip(names, classes, strict=True):
        out = tmp / folder
        out.mkdir()
        used: set[str] = set()
        for path in _walk_images(dirs[name], root, ignored):
            try:
                is_image = path.suffix.lower() in IMAGE_EXTENSIONS
                img, mode = decode_image(path) if is_image else decode_dicom(path)
                if min(img.size) < MIN_SIDE:
                    raise ImageDecodeError(
                        f"too small ({img.width}x{img.height} px; the folder source needs at "
                        f"least {MIN_SIDE}x{MIN_SIDE})"
                    )
            except ImageDecodeError as exc:
                excluded.append({"path": path.relative_to(root).as_posix(), "reason": str(exc)})
                continue
            stem = _output_stem(path.relative_to(dirs[name]))
            candidate, n = stem, 1
            while candidate.lower() in used:
                candidate, n = f"{stem}_{n}", n + 1
            used.add(candidate.lower())
            _save_png(img, out / f"{candidate}.png")
            sources.append((f"{folder}/{candidate}.png", path.relative_to(root).as_posix()))
            counts[folder] += 1
            modes[mode] += 1
        if counts[folder] == 0:
            empty.append(name)
    report = _report("folder", classes, counts, modes, excluded, ignored)
    if empty:
        more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
        raise IngestError(
            f"class folder '{empty[0]}'{more} has no readable images; add images or remove the "
            "folder", report,
        )
    write_raw_metadata(tmp, root, data.metadata, sources, {e["path"] for e in excluded})
    return classes, report


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


def _prepare_npz(data: DataParams, tmp: Path) -> tuple[list[str], dict]:
    path = Path(data.path)
    arrays = _load_npz(path)
    for split in NPZ_SPLITS:
        _check_npz_split(path, split, arrays[f"{split}_images"], arrays[f"{split}_labels"])
    values = sorted({int(v) for s in NPZ_SPLITS for v in arrays[f"{s}_labels"].reshape(-1)})
    if len(values) < 2:
        raise MedclassError(f"npz '{path}' has {len(values)} distinct label(s); need at least 2")
    if data.class_names is None:
        names = [f"class_{i}" for i in range(len(values))]
    elif len(data.class_names) != len(values):
        raise MedclassError(
            f"data.class_names has {len(data.class_names)} names but '{path}' has "
            f"{len(values)} distinct labels; give exactly {len(values)} names"
        )
    else:
        names = list(data.class_names)
    classes = _safe_class_names(names)
    index = {v: i for i, v in enumerate(values)}
    for c in classes:
        (tmp / c).mkdir()
    counts: Counter = Counter()
    modes: Counter = Counter()
    rows: list[tuple[str, str]] = []
    for split in NPZ_SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"].reshape(-1)
        for i in range(images.shape[0]):
            arr = images[i]
            if arr.ndim == 3 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            mode = "L" if arr.ndim == 2 else "RGB"
            folder = classes[index[int(labels[i])]]
            rel = f"{folder}/{split}_{i:05d}.png"
            _save_png(Image.fromarray(np.ascontiguousarray(arr), mode), tmp / rel)
            rows.append((rel, split))
            counts[folder] += 1
            modes[mode] += 1
    with open(tmp / "predefined_split.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["path", "split"])
        writer.writerows(rows)
    return classes, _report("npz", classes, counts, modes, [], [])


# ---------------------------------------------------------------- medmnist, kaggle


def _prepare_medmnist(data: DataParams, tmp: Path) -> tuple[list[str], dict]:
    """The official file (found or downloaded by ``medmnist_source``), read as an npz."""
    npz_data, info = medmnist_source.resolve(data)
    classes, report = _prepare_npz(npz_data, tmp)
    report.update(source="medmnist", medmnist=info)
    return classes, report


def _prepare_kaggle(data: DataParams, tmp: Path) -> tuple[list[str], dict]:
    """The downloaded dataset folder (``kaggle_source``), read as a folder source."""
    folder_data, info = kaggle_source.resolve(data)
    classes, report = _prepare_folder(folder_data, tmp)
    report.update(source="kaggle", kaggle=info)
    return classes, report


# ---------------------------------------------------------------- entry point

_Prepare = Callable[[DataParams, int, Path], tuple[list[str], dict]]
SOURCES: dict[str, _Prepare] = {
    "synthetic": _prepare_synthetic,
    "folder": lambda data, seed, tmp: _prepare_folder(data, tmp),
    "npz": lambda data, seed, tmp: _prepare_npz(data, tmp),
    "medmnist": lambda data, seed, tmp: _prepare_medmnist(data, tmp),
    "kaggle": lambda data, seed, tmp: _prepare_kaggle(data, tmp),
}
"""``data.source`` -> its ingest: ``(data, seed, tmp) -> (class names, data report)``."""


def prepare_raw(data: DataParams, seed: int, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Materialise ``data`` under ``out_dir`` (atomically) and return the data report."""
    prepare = SOURCES.get(data.source)
    if prepare is None:  # pragma: no cover - DataParams validation forbids other values
        raise MedclassError(
            f"data.source '{data.source}' is unknown; use one of: {', '.join(SOURCES)}"
        )
    with atomic_dir(out_dir) as tmp:
        classes, report = prepare(data, seed, tmp)
        write_json(tmp / "classes.json", {"classes": classes})
    return report
