"""The prepare stage's output: a validated manifest of the source images (no image copies).

``data/raw/`` holds

* ``manifest.csv``: one row per kept image: ``path`` (relative to the root, forward slashes),
  ``label``, ``class_name``, ``split`` (the source's own split, or empty), ``group`` (a group
  id from a CSV source's group column, or empty), ``width``, ``height``, ``mode`` (``L`` or
  ``RGB`` after decoding), ``file_sha256``, ``pixel_sha256`` and ``phash`` (hex, 256 bits);
* ``source.json``: ``{"source", "root", "layout"}``: where the files are read from. For a
  user's folder or CSV source the root is ``data.path`` (the user's tree, versioned with
  ``dvc add``); generated sources (synthetic, npz, medmnist, kaggle) keep their images in
  ``data/raw/images`` and record ``"root": null``, so the folder holds no machine path;
* ``classes.json``: ``{"classes": [names in label order]}``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from medclass.errors import MedclassError
from medclass.io import atomic_path, read_json

MANIFEST_FILE = "manifest.csv"
SOURCE_FILE = "source.json"
CLASSES_FILE = "classes.json"
IMAGES_DIR = "images"
_RERUN = "rerun `dvc repro prepare`"


@dataclass(frozen=True)
class RawRow:
    """One validated source image (see the module docstring for the columns)."""

    path: str
    label: int
    class_name: str
    split: str
    group: str
    width: int
    height: int
    mode: str
    file_sha256: str
    pixel_sha256: str
    phash: str


HEADER: tuple[str, ...] = tuple(f.name for f in fields(RawRow))
_INT_FIELDS = {"label", "width", "height"}


def write_raw_manifest(path: str | os.PathLike, rows: list[RawRow]) -> None:
    """Write ``rows`` atomically as CSV with :data:`HEADER`."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(astuple(r) for r in rows)


def read_raw_manifest(path: str | os.PathLike) -> list[RawRow]:
    """Rows of a manifest written by :func:`write_raw_manifest` (one-line error if unusable)."""
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            if tuple(next(reader, ())) != HEADER:
                raise MedclassError(f"{p}: header must be {','.join(HEADER)}; {_RERUN}")
            rows = []
            for line_no, rec in enumerate(reader, start=2):
                if len(rec) != len(HEADER):
                    raise MedclassError(f"{p} line {line_no}: malformed row; {_RERUN}")
                values: dict[str, Any] = dict(zip(HEADER, rec, strict=True))
                for key in _INT_FIELDS:
                    values[key] = int(values[key])
                rows.append(RawRow(**values))
    except FileNotFoundError as exc:
        raise MedclassError(f"{p} not found; run `dvc repro prepare`") from exc
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise MedclassError(f"cannot read {p} ({type(exc).__name__}); {_RERUN}") from exc
    return rows


def read_source(raw_dir: str | os.PathLike) -> dict[str, Any]:
    """``source.json`` of ``raw_dir``: where the manifest's paths are read from."""
    path = Path(raw_dir) / SOURCE_FILE
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("root", 0), str | None):
        raise MedclassError(f"{path} must hold a 'root' folder or null; {_RERUN}")
    return data


def source_root(raw_dir: str | os.PathLike) -> Path:
    """The folder the manifest's paths are relative to (``raw_dir/images`` for generated
    sources)."""
    root = read_source(raw_dir)["root"]
    return Path(raw_dir) / IMAGES_DIR if root is None else Path(root)
