"""The decode-once cache: every source image is decoded and resized once into uint8 NCHW
``.npy`` files.

Training memory-maps these arrays and never touches image files. Resizing squashes to
``image_size x image_size`` (aspect ratio is not kept) with ``Image.Resampling.BILINEAR``;
Pillow widens the filter support when downscaling, so reductions are antialiased.

The split stage decodes every source file once (:func:`decode_images`, in manifest order, into
a scratch array; prepare already fingerprinted it at full resolution), then copies the rows of
each split into place (:func:`write_split_cache`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from medclass.data.ingest import decode_file
from medclass.data.split import SPLITS, ManifestRow
from medclass.errors import MedclassError
from medclass.io import atomic_path

ChannelSetting = Literal["auto", 1, 3]
SCRATCH_FILE = ".decoded.npy"
_MODES = ("L", "RGB")
_BATCH = 256
_STATS_CHUNK_BYTES = 64 * 2**20
_RERUN_PREPARE = "rerun `dvc repro prepare`"


def resolve_channels(setting: ChannelSetting | int | str, modes: Iterable[str]) -> int:
    """Channel count: 1 or 3 as given; ``"auto"`` is 1 if every mode is "L", else 3."""
    if setting in (1, 3):
        return int(setting)
    if setting != "auto":
        raise MedclassError(f"data.channels is {setting!r}; use auto, 1 or 3")
    return 1 if all(m == "L" for m in modes) else 3


def _bad_image(path: Path, exc: BaseException) -> MedclassError:
    reason = (str(exc).splitlines() or [""])[0] or type(exc).__name__
    return MedclassError(f"cannot decode {path} ({reason}); {_RERUN_PREPARE}")


def _read_mode(path: Path) -> str:
    """``L`` or ``RGB``: the mode a file decodes to (``channels: auto`` only; the split stage
    takes modes from the prepare manifest instead of decoding twice)."""
    try:
        return decode_file(path)[0].mode
    except MedclassError as exc:
        raise _bad_image(path, exc) from exc


def _decode(path: Path, size: int, channels: int) -> np.ndarray:
    """Decode one source file (``ingest.decode_file``: any Pillow format or DICOM, normalised
    to ``L``/``RGB``) to a uint8 (C, size, size) array."""
    try:
        img, _ = decode_file(path)
    except MedclassError as exc:
        raise _bad_image(path, exc) from exc
    img = img.convert("L" if channels == 1 else "RGB")  # L->RGB repeats the gray
    arr = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _save(path: Path, arr: np.ndarray) -> None:
    """``np.save`` through a handle (a path would get ``.npy`` appended to the temp name)."""
    with path.open("wb") as fh:
        np.save(fh, arr, allow_pickle=False)


def _workers() -> int:
    return min(16, (os.cpu_count() or 1) + 2)


def decode_images(
    files: Sequence[Path],
    image_size: int,
    channels: ChannelSetting | int | str,
    out_path: Path,
) -> int:
    """Decode every file once, in list order, into a uint8 (N, C, size, size) ``.npy`` at
    ``out_path`` (written atomically); return the channel count."""
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        modes = list(pool.map(_read_mode, files)) if channels == "auto" else []
        n_channels = resolve_channels(channels, modes)
        shape = (len(files), n_channels, image_size, image_size)
        with atomic_path(out_path) as tmp:
            if not files:
                _save(tmp, np.zeros(shape, dtype=np.uint8))
                return n_channels
            decode = functools.partial(_decode, size=image_size, channels=n_channels)
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            try:
                for start in range(0, len(files), _BATCH):
                    # pool.map yields in input order, so the output order is deterministic.
                    for i, arr in enumerate(pool.map(decode, files[start:start + _BATCH])):
                        out[start + i] = arr
                out.flush()
            finally:
                del out
    return n_channels


def _copy_rows(path: Path, images: np.ndarray, index: np.ndarray) -> None:
    """Write ``images[index]`` (chunked, so never all in memory) as an ``.npy`` atomically."""
    shape = (len(index), *images.shape[1:])
    with atomic_path(path) as tmp:
        if not len(index):
            _save(tmp, np.zeros(shape, dtype=np.uint8))
            return
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        try:
            for start in range(0, len(index), _BATCH):
                sel = index[start : start + _BATCH]
                out[start : start + len(sel)] = images[sel]
            out.flush()
        finally:
            del out


def channel_mean_std(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean/std (population) of uint8 NCHW ``images`` scaled to 0..1.

    Accumulates float64 sums over chunks, so no float copy of the whole array is made.
    """
    n, c = images.shape[:2]
    if n == 0:
        raise MedclassError("the train split is empty; add images or change the split fractions")
    per_image = max(1, int(np.prod(images.shape[1:])) * 8)
    step = max(1, _STATS_CHUNK_BYTES // per_image)
    total = np.zeros(c, dtype=np.float64)
    total_sq = np.zeros(c, dtype=np.float64)
    for start in range(0, n, step):
        chunk = np.asarray(images[start : start + step], dtype=np.float64) / 255.0
        total += chunk.sum(axis=(0, 2, 3))
        total_sq += np.square(chunk).sum(axis=(0, 2, 3))
    count = n * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return [float(v) for v in mean], [float(v) for v in std]


def _check_rows(rows: list[ManifestRow], classes: list[str]) -> None:
    for r in rows:
        if not (0 <= r.label < len(classes)) or classes[r.label] != r.class_name:
            raise MedclassError(
                f"manifest row {r.path!r} (label {r.label}, {r.class_name!r}) does not match "
                "classes.json; rerun `dvc repro split`"
            )


def write_split_cache(
    images: np.ndarray,
    index: Mapping[str, int],
    rows: list[ManifestRow],
    classes: list[str],
    out_dir: Path,
) -> dict[str, Any]:
    """Copy already decoded ``images`` (uint8 NCHW, row ``index[path]`` per image) into
    ``out_dir/{split}_images.npy`` / ``_labels.npy`` in manifest order; return the stats."""
    out_dir = Path(out_dir)
    _check_rows(rows, classes)
    by_split = {s: [r for r in rows if r.split == s] for s in SPLITS}
    for split, split_rows in by_split.items():
        idx = np.array([index[r.path] for r in split_rows], dtype=np.int64)
        _copy_rows(out_dir / f"{split}_images.npy", images, idx)
        labels = np.array([r.label for r in split_rows], dtype=np.int64)
        with atomic_path(out_dir / f"{split}_labels.npy") as tmp:
            _save(tmp, labels)
    train_images, _ = load_cached_split(out_dir, "train")
    mean, std = channel_mean_std(train_images)
    del train_images
    counts = {
        s: {name: sum(r.class_name == name for r in split_rows) for name in classes}
        for s, split_rows in by_split.items()
    }
    return {
        "mean": mean,
        "std": std,
        "image_size": int(images.shape[2]),
        "channels": int(images.shape[1]),
        "classes": list(classes),
        "counts": counts,
    }


def build_cache(
    raw_dir: Path,
    rows: list[ManifestRow],
    image_size: int,
    channels: ChannelSetting | int | str,
    classes: list[str],
    out_dir: Path,
) -> dict[str, Any]:
    """Decode every manifest image once into ``out_dir/{split}_images.npy`` / ``_labels.npy``.

    Images are uint8 (N, C, H, W) and labels int64, in manifest order within each split; each
    file is written atomically. Returns stats: train-only per-channel ``mean``/``std`` (0..1, at
    ``image_size``), ``image_size``, ``channels``, ``classes`` and per-split class ``counts``.
    (The split stage calls :func:`decode_images` and :func:`write_split_cache` itself, so that
    the same decode also fingerprints each image for duplicate detection.)
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    _check_rows(rows, classes)
    scratch = out_dir / SCRATCH_FILE
    decode_images([raw_dir / r.path for r in rows], image_size, channels, scratch)
    images = np.load(scratch, mmap_mode="r")
    try:
        return write_split_cache(images, {r.path: i for i, r in enumerate(rows)}, rows, classes,
                                 out_dir)
    finally:
        del images
        scratch.unlink(missing_ok=True)


def load_cached_split(
    cache_dir: Path, split: str, mmap: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of one split; images are memory-mapped read-only when ``mmap``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    cache_dir = Path(cache_dir)
    img_path = cache_dir / f"{split}_images.npy"
    lbl_path = cache_dir / f"{split}_labels.npy"
    for p in (img_path, lbl_path):
        if not p.is_file():
            raise MedclassError(f"{p} not found; run `dvc repro split`")
    try:
        images = np.load(img_path, mmap_mode="r" if mmap else None, allow_pickle=False)
        labels = np.load(lbl_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise MedclassError(
            f"cannot read cache in {cache_dir} ({type(exc).__name__}); rerun `dvc repro split`"
        ) from exc
    if images.ndim != 4 or images.dtype != np.uint8 or labels.shape != (images.shape[0],):
        raise MedclassError(f"cache in {cache_dir} is inconsistent; rerun `dvc repro split`")
    return images, labels
