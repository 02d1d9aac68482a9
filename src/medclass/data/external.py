"""External test sets (``evaluate.external``): list, validate and decode one labelled set.

A set is a flat class-folder tree (``<class>/…``; a pre-split ``train/``/``test/`` tree is
refused) or a CSV source (``CsvParams``, read like ``data.source: csv``). Every file is decoded
and checked once by ``ingest.validate`` (unreadable files are excluded with their reason), then
decoded again at the training ``image_size``/``channels`` into a uint8 NCHW ``.npy``
(``cache.decode_images``). Labels are indices into the MODEL's class order: a class the model
does not know stops with one line; a model class the set lacks is only recorded.

CSV labels are class names; integer labels (``0``, ``1``, …) that are not model class names are
read as indices into the model's classes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medclass.config.data import DataParams
from medclass.config.schema import ExternalSet
from medclass.data.cache import decode_images
from medclass.data.csv_source import list_csv
from medclass.data.folder_source import list_folder
from medclass.data.ingest import Candidate, validate
from medclass.data.layout import detect_layout, split_name
from medclass.errors import MedclassError

EXAMPLES = 5
_INT = re.compile(r"^[+-]?\d+$")
_REWORD = (("relative to data.path, or absolute", "relative to the set's path"),
           ("data.csv.", "csv."), ("data.path", "path"))
"""csv_source's fixes name the main data's keys; an external set's entry has its own."""
Listing = tuple[list[Candidate], dict[str, Any]]
"""A lister's candidates and its notes for the metrics (e.g. the CSV's missing files)."""


@dataclass
class ExternalData:
    """A decoded set: uint8 NCHW ``images`` (maybe memory-mapped), int64 ``labels`` in the
    model's class order, and what was left out."""

    name: str
    path: str
    images: np.ndarray
    labels: np.ndarray
    classes_present: list[str]
    classes_absent: list[str]
    n_excluded: int = 0
    excluded: list[dict[str, str]] = field(default_factory=list)
    n_ignored: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The bookkeeping written beside the set's metrics."""
        return {"path": self.path, "n_images": int(len(self.labels)),
                "n_excluded": self.n_excluded, "excluded_examples": self.excluded,
                "n_ignored": self.n_ignored, "classes_present": self.classes_present,
                "classes_absent": self.classes_absent, **self.notes}


def _where(spec: ExternalSet) -> str:
    return f"evaluate.external {spec.name!r} ({spec.path})"


def _list_tree(spec: ExternalSet, model_classes: Sequence[str],
               ignored: list[dict[str, str]]) -> Listing:
    """Candidates of a flat class-folder tree; a tree of split folders is refused."""
    root = Path(spec.path)
    if not root.is_dir():
        raise MedclassError(f"{_where(spec)}: folder not found; create it with one subfolder per "
                            "class, or fix the path")
    layout = detect_layout(root, "classes")
    splits = sorted(c for c in layout.classes if split_name(c) and c not in model_classes)
    if splits:
        raise MedclassError(f"{_where(spec)} holds split folders {splits}; an external set is "
                            "scored whole: point path at one folder whose subfolders are classes")
    ignored.extend(layout.ignored)  # top-level files, hidden or symlinked folders
    return list_folder(root, layout, ignored), {}


def _list_csv(spec: ExternalSet, model_classes: Sequence[str],
              ignored: list[dict[str, str]]) -> Listing:
    """Candidates of a CSV source, labels renamed to the model's class names where they are
    indices (see the module docstring)."""
    data = DataParams(source="csv", path=spec.path, csv=spec.csv)
    try:
        listing = list_csv(data, ignored)
    except MedclassError as exc:  # its fixes name data.path/data.csv: say which set
        text = str(exc)
        for old, new in _REWORD:
            text = text.replace(old, new)
        raise MedclassError(f"{_where(spec)}: {text}") from None
    rep = listing.report
    notes = {"csv": {"rows": rep["rows"], **{k: rep[k]["count"] for k in (
        "missing_files", "unlisted_files", "label_conflicts", "empty_cells")}}}
    labels = {c.class_name for c in listing.candidates}
    if all(_INT.match(v) for v in labels) and not labels <= set(model_classes):
        bad = sorted(v for v in labels if not 0 <= int(v) < len(model_classes))
        if bad:
            raise MedclassError(f"{_where(spec)}: label {bad[0]} is not a class index of the "
                                f"model (0..{len(model_classes) - 1}: {list(model_classes)})")
        return [Candidate(c.path, model_classes[int(c.class_name)], c.split, c.group)
                for c in listing.candidates], notes
    return listing.candidates, notes


LISTERS: dict[str, Callable[[ExternalSet, Sequence[str], list[dict[str, str]]], Listing]] = {
    "folder": _list_tree, "csv": _list_csv}
"""``ExternalSet.source`` -> its lister."""


def list_external(spec: ExternalSet, model_classes: Sequence[str],
                  ignored: list[dict[str, str]]) -> Listing:
    """The set's files and class names; a class the model does not know stops here."""
    candidates, notes = LISTERS[spec.source](spec, model_classes, ignored)
    unknown = sorted({c.class_name for c in candidates} - set(model_classes))
    if unknown:
        raise MedclassError(f"{_where(spec)}: class {unknown[0]!r} is not one of the model's "
                            f"classes {list(model_classes)}; rename or remove it")
    return candidates, notes


def load_external(spec: ExternalSet, model_classes: Sequence[str], image_size: int,
                  channels: int, work_dir: Path) -> ExternalData:
    """List, validate and decode ``spec`` into ``work_dir/<name>.npy`` (memory-mapped)."""
    ignored: list[dict[str, str]] = []
    candidates, notes = list_external(spec, model_classes, ignored)
    root = Path(spec.path)
    rows, excluded, _ = validate(root, candidates, list(model_classes))
    if not rows:
        why = f"; first: {excluded[0]['path']}: {excluded[0]['reason']}" if excluded else ""
        raise MedclassError(f"{_where(spec)} has no readable images{why}; add images in one "
                            "subfolder per class (or fix the CSV)")
    out = Path(work_dir) / f"{spec.name}.npy"
    decode_images([root / r.path for r in rows], image_size, channels, out)
    labels = np.array([r.label for r in rows], dtype=np.int64)
    present = sorted({r.class_name for r in rows}, key=list(model_classes).index)
    return ExternalData(
        name=spec.name, path=spec.path, images=np.load(out, mmap_mode="r"), labels=labels,
        classes_present=present, classes_absent=[c for c in model_classes if c not in present],
        n_excluded=len(excluded), excluded=excluded[:EXAMPLES], n_ignored=len(ignored),
        notes=notes)
