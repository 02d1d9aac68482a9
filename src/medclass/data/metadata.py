"""Per-image metadata of the folder source (e.g. a patient id) and the ``split.group_by`` column.

The user's CSV is ``data.metadata`` (default ``metadata.csv``), a path relative to
``data.path``, with a ``path`` column holding each image's path relative to ``data.path``
(``normal/p001_a.png``) and any other columns. Prepare writes ``data/raw/metadata.csv``: the
manifest ``path`` (the same relative path), ``source_path`` (equal to it since images are read
in place) and the user's columns, one row per kept image. The split stage reads the
``split.group_by`` column from that file.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medclass.errors import MedclassError

RAW_METADATA_FILE = "metadata.csv"
_RESERVED = "source_path"


def _clean_rel(value: str) -> str:
    rel = value.strip().replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    return rel


def read_source_metadata(
    root: Path, name: str | None
) -> tuple[Path | None, list[str], dict[str, tuple[int, dict[str, str]]]]:
    """The user's CSV under ``root``: (its path or None if absent, extra columns,
    {path relative to root: (line number, {column: value})})."""
    if name is None or not (root / name).is_file():
        return None, [], {}
    path = root / name
    fix = f"fix {path} or set data.metadata: null"
    rows: dict[str, tuple[int, dict[str, str]]] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            if "path" not in header:
                raise MedclassError(
                    f"{path} has no 'path' column (image paths relative to data.path); {fix}"
                )
            fields = [f for f in header if f != "path"]
            if _RESERVED in fields:
                raise MedclassError(f"{path}: column name {_RESERVED!r} is reserved; {fix}")
            for line_no, rec in enumerate(reader, start=2):
                rel = _clean_rel(rec.get("path") or "")
                if rel in rows:
                    raise MedclassError(f"{path} line {line_no}: {rel!r} listed twice; {fix}")
                rows[rel] = (line_no, {f: (rec.get(f) or "").strip() for f in fields})
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MedclassError(f"cannot read {path} ({type(exc).__name__}); {fix}") from exc
    return path, fields, rows


def write_raw_metadata(
    out_dir: Path,
    root: Path,
    name: str | None,
    sources: Sequence[tuple[str, str]],
    excluded: set[str],
) -> None:
    """Write ``out_dir/metadata.csv`` for the kept images ``sources`` ((raw path, source path)).

    A user row naming a file that is neither kept nor excluded (unreadable) is an error.
    """
    meta_path, fields, meta = read_source_metadata(root, name)
    known = {src for _, src in sources} | excluded
    for rel, (line_no, _) in meta.items():
        if rel not in known:
            raise MedclassError(
                f"{meta_path} line {line_no}: {rel!r} is not an image under data.path; use paths "
                "relative to data.path (e.g. normal/img1.png) or remove the row"
            )
    with open(out_dir / RAW_METADATA_FILE, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["path", _RESERVED, *fields])
        for raw_rel, src in sources:
            values = meta[src][1] if src in meta else {}
            writer.writerow([raw_rel, src, *(values.get(f, "") for f in fields)])


def read_group_column(raw_dir: Path, column: str, paths: Sequence[str]) -> np.ndarray:
    """Group id per image (in ``paths`` order) from column ``column`` of the raw metadata.

    Every image needs a non-empty value; equal values give equal ids.
    """
    path = Path(raw_dir) / RAW_METADATA_FILE
    if not path.is_file():
        raise MedclassError(
            f"split.group_by is {column!r} but {path} does not exist; use data.source: folder "
            "with a data.metadata CSV (path + that column), or set split.group_by: null"
        )
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = list(reader.fieldnames or [])
            if column not in fields:
                extra = [f for f in fields if f not in ("path", _RESERVED)]
                raise MedclassError(
                    f"data.metadata CSV has no column {column!r} (columns: "
                    f"{', '.join(extra) or 'none'}); add it or fix split.group_by"
                )
            for rec in reader:
                values[rec["path"]] = (rec.get(column) or "").strip()
                sources[rec["path"]] = rec.get(_RESERVED) or rec["path"]
    except (OSError, UnicodeDecodeError, csv.Error, KeyError) as exc:
        raise MedclassError(
            f"cannot read {path} ({type(exc).__name__}); rerun `dvc repro prepare`"
        ) from exc
    missing = [p for p in paths if not values.get(p)]
    if missing:
        first = sources.get(missing[0], missing[0])
        raise MedclassError(
            f"{len(missing)} images have no {column!r} value (first: {first!r}); fill in "
            f"column {column!r} of the data.metadata CSV for every image, or set "
            "split.group_by: null"
        )
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(values[p], len(ids)) for p in paths], dtype=np.int64)
