"""``data.source: csv``: an image folder plus a CSV/TSV of labels (APTOS, HAM10000, ISIC…).

Each row names one image (``csv.image_column``: a relative path, or an id — see
``CsvParams``) and its label (``csv.label_column``: a string, or an integer that
``data.class_names`` can name), optionally a group (patient, lesion) and a split. Nothing is
dropped silently: rows whose file does not exist, image files with no row, duplicate rows and
rows that give one file two labels (a label conflict: the file is excluded) are counted in the
data report with their first examples. A cell holding several labels (``A|B``) is refused:
multi-label data is not supported.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from medclass.config import DataParams
from medclass.data.folder_source import walk_images
from medclass.data.ingest import Candidate
from medclass.data.layout import split_name
from medclass.errors import MedclassError

EXAMPLES = 10
_MULTI = re.compile(r"[|;]|^\[.*\]$")
_INT = re.compile(r"^[+-]?\d+(\.0+)?$")


@dataclass
class CsvListing:
    """What the CSV gave: candidates, class names in label order, and the bookkeeping."""

    candidates: list[Candidate]
    classes: list[str]
    report: dict[str, Any] = field(default_factory=dict)


def _examples(items: list[str]) -> dict[str, Any]:
    return {"count": len(items), "examples": items[:EXAMPLES]}


def _delimiter(path: Path, setting: str, sample: str) -> str:
    if setting != "auto":
        return setting
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_table(path: Path, setting: str) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a CSV/TSV file (UTF-8, BOM allowed)."""
    fix = "check data.csv.file and save it as UTF-8 CSV"
    if not path.is_file():
        raise MedclassError(f"label file '{path}' not found; set data.csv.file (relative to "
                            "data.path, or absolute)")
    try:
        text = path.read_text(encoding="utf-8-sig")
        reader = csv.DictReader(text.splitlines(), delimiter=_delimiter(path, setting, text[:4096]))
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        rows = [{k: (v or "").strip() for k, v in rec.items() if k is not None} for rec in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MedclassError(f"cannot read '{path}' ({type(exc).__name__}); {fix}") from exc
    return header, rows


def _require(path: Path, header: list[str], key: str, column: str | None) -> None:
    if column is not None and column not in header:
        raise MedclassError(
            f"'{path}' has no column {column!r} (columns: {', '.join(header) or 'none'}); "
            f"set data.csv.{key} to one of them"
        )


def _class_names(values: set[str], given: list[str] | None, path: Path) -> tuple[list[str], dict]:
    """Class names in label order and a label value -> name map."""
    if values and all(_INT.match(v) for v in values):
        ints = sorted({int(float(v)) for v in values})
        if given is None:
            return [str(i) for i in ints], {v: str(int(float(v))) for v in values}
        bad = [i for i in ints if not 0 <= i < len(given)]
        if bad:
            raise MedclassError(
                f"'{path}': label {bad[0]} has no name in data.class_names ({len(given)} names "
                f"for labels 0..{len(given) - 1}); give one name per label"
            )
        return list(given), {v: given[int(float(v))] for v in values}
    if given is not None and set(given) != values:
        raise MedclassError(
            f"data.class_names {given} do not match the labels {sorted(values)} of '{path}'; "
            "fix data.class_names or remove it"
        )
    return (list(given) if given else sorted(values)), {v: v for v in values}


class _Resolver:
    """Map an image cell to a file (relative to the root) among the files under image_dir."""

    def __init__(self, root: Path, image_dir: str, extension: str | None,
                 ignored: list[dict[str, str]]) -> None:
        self.prefix = PurePosixPath(image_dir)
        self.extension = extension
        files = walk_images(root / image_dir, root, ignored) if (root / image_dir).is_dir() \
            else []
        self.files = {p.relative_to(root).as_posix() for p in files}
        self.by_stem: dict[str, list[str]] = defaultdict(list)
        for rel in sorted(self.files):
            self.by_stem[PurePosixPath(rel).stem].append(rel)

    def __call__(self, value: str) -> str | None:
        value = value.replace("\\", "/").removeprefix("./")
        if self.extension is not None:
            value = f"{value}{self.extension}"
        elif "/" not in value and not PurePosixPath(value).suffix:
            hits = self.by_stem.get(value, [])
            if len(hits) > 1:
                raise MedclassError(
                    f"image id {value!r} matches {len(hits)} files ({hits[0]}, {hits[1]}); "
                    "give relative paths in the image column or set data.csv.extension"
                )
            return hits[0] if hits else None
        rel = (self.prefix / value).as_posix().removeprefix("./")
        return rel if rel in self.files else None


def _split_of(value: str, path: Path, line_no: int) -> str:
    if not value:
        return ""
    split = split_name(value)
    if split is None:
        raise MedclassError(
            f"'{path}' line {line_no}: split {value!r} is not train/val/test (or training, "
            "valid, validation, dev, testing); fix the cell or unset data.csv.split_column"
        )
    return split


def _refuse_multilabel(path: Path, column: str, line_no: int, value: str) -> None:
    if _MULTI.search(value):
        raise MedclassError(
            f"'{path}' line {line_no}: label {value!r} in column {column!r} holds several "
            "labels; multi-label data is not supported (one label per image)"
        )


def _collect(path: Path, rows: list[dict[str, str]], data: DataParams,
             resolve: _Resolver) -> tuple[dict[str, list], dict[str, list[str]]]:
    """file -> [(line, label, split, group), ...] and the bookkeeping lists."""
    p = data.csv
    per_file: dict[str, list] = defaultdict(list)
    notes: dict[str, list[str]] = {"missing_files": [], "empty_cells": []}
    for line_no, rec in enumerate(rows, start=2):
        image, label = rec.get(p.image_column, ""), rec.get(p.label_column, "")
        if not image or not label:
            notes["empty_cells"].append(f"line {line_no}")
            continue
        _refuse_multilabel(path, p.label_column, line_no, label)
        rel = resolve(image)
        if rel is None:
            notes["missing_files"].append(f"line {line_no}: {image}")
            continue
        split = _split_of(rec.get(p.split_column, ""), path, line_no) if p.split_column else ""
        group = rec.get(p.group_column, "") if p.group_column else ""
        per_file[rel].append((line_no, label, split, group))
    return per_file, notes


def list_csv(data: DataParams, ignored: list[dict[str, str]]) -> CsvListing:
    """Read ``data.csv`` against the files under ``data.path`` (see the module docstring)."""
    root, p = Path(data.path), data.csv
    if not root.is_dir():
        raise MedclassError(f"data.path '{root}' is not a folder; point it at the image folder")
    path = Path(p.file) if Path(p.file).is_absolute() else root / p.file
    header, rows = read_table(path, p.delimiter)
    for key in ("image_column", "label_column", "group_column", "split_column"):
        _require(path, header, key, getattr(p, key))
    resolve = _Resolver(root, p.image_dir, p.extension, ignored)
    per_file, notes = _collect(path, rows, data, resolve)
    conflicts, duplicates, kept = [], 0, {}
    for rel, entries in per_file.items():
        labels = sorted({e[1] for e in entries})
        if len(labels) > 1:
            lines = ", ".join(f"line {e[0]} {e[1]!r}" for e in entries[:3])
            conflicts.append(f"{rel}: {lines}")
            continue
        duplicates += len(entries) - 1
        kept[rel] = entries[0]
    if len({e[1] for e in kept.values()}) < 2:
        raise MedclassError(f"'{path}' gives fewer than 2 classes for existing files; check "
                            "data.csv.label_column and data.csv.image_column")
    classes, name_of = _class_names({e[1] for e in kept.values()}, data.class_names, path)
    candidates = [Candidate(rel, name_of[e[1]], e[2], e[3]) for rel, e in sorted(kept.items())]
    unlisted = sorted(resolve.files - per_file.keys())
    report = {
        "file": str(path), "rows": len(rows), "images": len(candidates),
        "missing_files": _examples(notes["missing_files"]),
        "unlisted_files": _examples(unlisted),
        "label_conflicts": _examples(conflicts),
        "duplicate_rows": duplicates,
        "empty_cells": _examples(notes["empty_cells"]),
    }
    return CsvListing(candidates, classes, report)
