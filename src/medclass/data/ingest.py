"""Validate listed source files into manifest rows: one full decode and fingerprint per file.

Every candidate file is read and decoded once (``decode_file``: Pillow formats through
``images.decode_image``, DICOM through ``dicom.decode_dicom``), so unreadable, truncated,
oversized or tiny files are found here and excluded with their reason, never replaced. The
same decode gives the row its size, mode and fingerprints (``dedup.fingerprint``), which the
split stage uses for duplicate detection without decoding again at full resolution.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from medclass.data.dedup import fingerprint
from medclass.data.dicom import decode_dicom
from medclass.data.images import IMAGE_EXTENSIONS, ImageDecodeError, decode_image
from medclass.data.raw_manifest import RawRow

MIN_SIDE = 4
"""Images narrower or shorter than this (px) are excluded as too small. A 1x1 or 1-px-wide
image is a single colour or a line, not a scan; upscaling it to the training size would only
add a constant image to the class. Anything from 4x4 up is kept (split resizes it)."""
_CHUNK = 512


@dataclass(frozen=True)
class Candidate:
    """A listed file: path relative to the root, its class, and the source's split / group."""

    path: str
    class_name: str
    split: str = ""
    group: str = ""


def decode_file(path: str | os.PathLike) -> tuple[Image.Image, str]:
    """Decode an image or DICOM file to ``L``/``RGB``; also return its original mode label."""
    if Path(path).suffix.lower() in IMAGE_EXTENSIONS:
        return decode_image(path)
    return decode_dicom(path)


def _check(path: Path) -> tuple[Image.Image, str, bytes]:
    data = path.read_bytes() if path.is_file() else b""
    img, mode = decode_file(path)
    if min(img.size) < MIN_SIDE:
        raise ImageDecodeError(
            f"too small ({img.width}x{img.height} px; need at least {MIN_SIDE}x{MIN_SIDE})"
        )
    return img, mode, data


def _one(root: Path, cand: Candidate, label: int) -> tuple[RawRow | None, str, str]:
    """(row or None, original mode, exclusion reason)."""
    try:
        img, mode, data = _check(root / cand.path)
    except ImageDecodeError as exc:
        return None, "", str(exc)
    except OSError as exc:  # read_bytes on an unreadable file
        return None, "", f"cannot read file ({exc.strerror or type(exc).__name__})"
    fp = fingerprint(img, data)
    row = RawRow(cand.path, label, cand.class_name, cand.split, cand.group, img.width,
                 img.height, img.mode, fp.file_sha256, fp.pixel_sha256, fp.phash.hex())
    return row, mode, ""


def _workers() -> int:
    return min(16, (os.cpu_count() or 1) + 2)


def validate(
    root: Path, candidates: Sequence[Candidate], classes: Sequence[str]
) -> tuple[list[RawRow], list[dict[str, str]], Counter]:
    """Decode and fingerprint every candidate (threads; output in input order).

    Returns (kept rows, excluded ``{"path", "reason"}`` entries, original-mode counts).
    """
    index = {c: i for i, c in enumerate(classes)}
    rows: list[RawRow] = []
    excluded: list[dict[str, str]] = []
    modes: Counter = Counter()
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        for start in range(0, len(candidates), _CHUNK):
            chunk = candidates[start:start + _CHUNK]
            results = pool.map(lambda c: _one(root, c, index[c.class_name]), chunk)
            for cand, (row, mode, reason) in zip(chunk, results, strict=True):
                if row is None:
                    excluded.append({"path": cand.path, "reason": reason})
                else:
                    rows.append(row)
                    modes[mode] += 1
    return rows, excluded, modes
