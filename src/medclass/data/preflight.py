"""``medclass data check PATH``: will prepare (and DVC) accept this image tree? A preflight.

Lists the tree with the prepare stage's own code (``layout.detect_layout``,
``folder_source.list_folder``, or ``csv_source.list_csv``), then checks every listed file: by
default its header only (Pillow opens it without decoding pixels; DICOM files need to be
readable and non-empty), with ``decode`` the full decode prepare does (``ingest.decode_file``).
A separate walk of the whole tree, hidden folders included, finds broken symbolic links: DVC
hashes ``data.path`` as a stage dependency and fails on one with ``[Errno 2] No such file or
directory`` before any stage runs. Problems are sorted into the kinds of ``ISSUES``; the
blocking ones would stop ``dvc repro``. File names are searched for a patient id
(``group_hint``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from medclass.data.group_hint import GroupHint, suggest_group_pattern
from medclass.data.images import IMAGE_EXTENSIONS, ImageDecodeError, check_readable
from medclass.data.ingest import MIN_SIDE, Candidate, decode_file
from medclass.errors import MedclassError, exception_line

EXAMPLES = 3


@dataclass(frozen=True)
class IssueKind:
    """A kind of problem: its title, whether it stops the pipeline, and the fix."""

    title: str
    blocking: bool
    fix: str


ISSUES: dict[str, IssueKind] = {
    "few_classes": IssueKind(
        "fewer than 2 classes", True,
        "give data.path one subfolder per class (at least two), or point it at the folder "
        "holding them"),
    "broken_link": IssueKind(
        "broken symbolic links", True,
        "DVC fails while hashing data.path ([Errno 2] No such file or directory) before any "
        "stage runs; remove each link or replace it by the file it pointed to"),
    "unreadable_folder": IssueKind(
        "unreadable folders", True,
        "DVC cannot hash data.path; make them readable (chmod) or remove them"),
    "unreadable_file": IssueKind(
        "unreadable files", True,
        "DVC cannot hash data.path; make them readable (chmod) or remove them"),
    "empty_class": IssueKind(
        "class folders with no images", True,
        "add images to each or remove the folder (from every split folder)"),
    "no_readable": IssueKind(
        "classes with no readable images", True,
        "replace the broken files listed below or remove the class"),
    "empty_file": IssueKind(
        "empty (0-byte) files", False, "prepare excludes them; copy them again or delete them"),
    "not_image": IssueKind(
        "files that do not open as images", False,
        "prepare excludes them; replace or delete them"),
    "corrupt": IssueKind(
        "truncated, corrupt or oversized images", False,
        "prepare excludes them; replace or delete them"),
    "outside_class": IssueKind(
        "files outside class folders", False, "ignored; move images into a class folder"),
    "non_image": IssueKind(
        "non-image files", False, "ignored (not an image extension, no DICOM magic)"),
    "symlinked_folder": IssueKind(
        "symlinked folders", False, "not followed; copy the folder in if its images belong"),
    "hidden": IssueKind("hidden files and folders", False, "ignored"),
    "csv_missing": IssueKind(
        "CSV rows naming no existing file", False, "fix the path or id, or drop the row"),
    "csv_unlisted": IssueKind(
        "image files with no CSV row", False, "ignored; add a row for each to label it"),
    "csv_conflict": IssueKind(
        "files given two labels in the CSV", False, "excluded; keep one row per file"),
    "csv_empty": IssueKind(
        "CSV rows with an empty image or label", False, "fill in or drop those rows"),
}
"""Issue kind -> what it is; shown in this order."""

_IGNORED_REASONS: dict[str, str] = {
    "hidden": "hidden",
    "symlinked folder": "symlinked_folder",
    "broken symbolic link": "broken_link",
    "not an image file": "non_image",
    "file outside any class folder": "outside_class",
    "unreadable folder": "unreadable_folder",
}
"""Start of a listing's ignored reason -> issue kind."""

_DECODE_REASONS: dict[str, str] = {
    "empty file": "empty_file",
    "cannot read file": "unreadable_file",
    "not a recognised image format": "not_image",
}
"""Start of an ``ImageDecodeError`` reason -> issue kind (any other reason: ``corrupt``)."""


@dataclass
class Issue:
    """How many things have the problem, and the first few."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, items: Sequence[str], count: int | None = None) -> None:
        """Count ``items`` (or ``count`` when the items are only examples) and keep examples."""
        self.count += len(items) if count is None else count
        self.examples.extend(items[: EXAMPLES - len(self.examples)])


@dataclass
class CheckReport:
    """What ``check`` found; ``counts`` is split ("" when none) -> class -> usable images."""

    root: str
    layout: str = ""
    split_folders: dict[str, str] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    issues: dict[str, Issue] = field(default_factory=dict)
    group_hint: GroupHint | None = None
    decoded: bool = False
    files: int = 0
    error: str | None = None

    def add(self, kind: str, items: Sequence[str], count: int | None = None) -> None:
        """Record ``items`` under issue ``kind`` (a key of ``ISSUES``)."""
        if items or count:
            self.issues.setdefault(kind, Issue()).add(items, count)

    def blocking(self) -> list[str]:
        """One line per problem that would stop the pipeline: what, where, the fix."""
        if self.error is not None:
            return [self.error]
        lines = []
        for kind, spec in ISSUES.items():
            issue = self.issues.get(kind)
            if spec.blocking and issue is not None:
                first = issue.examples[0] if issue.examples else "none"
                more = f" (and {issue.count - 1} more)" if issue.count > 1 else ""
                lines.append(f"{spec.title}: {first}{more}; {spec.fix}")
        return lines


def _kind_of(reason: str, table: dict[str, str], default: str) -> str:
    return next((k for start, k in table.items() if reason.startswith(start)), default)


def _parse_header(fh: BinaryIO) -> None:
    """Raise ``ImageDecodeError`` unless Pillow parses the header (pixels are not decoded)."""
    try:
        with Image.open(fh) as img:
            pixels = img.width * img.height
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not a recognised image format") from exc
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("decompression bomb (too many pixels)") from exc
    except (SyntaxError, ValueError, EOFError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a read error, not a bad header
        raise ImageDecodeError(f"corrupt image header ({exception_line(exc)})") from exc
    if Image.MAX_IMAGE_PIXELS is not None and pixels > Image.MAX_IMAGE_PIXELS:
        raise ImageDecodeError("decompression bomb (too many pixels)")


def _header_check(path: Path) -> None:
    """Raise ``ImageDecodeError`` unless the file is readable and its image header parses;
    a DICOM file (by extension or magic) only needs to be readable and not empty."""
    check_readable(path)
    try:
        with path.open("rb") as fh:
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                _parse_header(fh)
            else:
                fh.read(1)
    except OSError as exc:
        raise ImageDecodeError(f"cannot read file ({exc.strerror or type(exc).__name__})"
                               ) from exc


def _decode_check(path: Path) -> None:
    """Raise ``ImageDecodeError`` unless the file decodes as prepare decodes it."""
    try:
        img, _ = decode_file(path)
    except OSError as exc:
        raise ImageDecodeError(f"cannot read file ({exc.strerror or type(exc).__name__})"
                               ) from exc
    if min(img.size) < MIN_SIDE:
        raise ImageDecodeError(f"too small ({img.width}x{img.height} px)")


FILE_CHECKS: dict[bool, Callable[[Path], None]] = {False: _header_check, True: _decode_check}
"""``decode`` -> the per-file check."""


def _problem(check: Callable[[Path], None], path: Path) -> str | None:
    try:
        check(path)
    except ImageDecodeError as exc:
        return str(exc)
    return None


def _check_files(root: Path, cands: Sequence[Candidate], report: CheckReport,
                 decode: bool) -> Counter:
    """Check every candidate; record the bad ones, return usable counts per (split, class)."""
    usable: Counter = Counter()
    check = FILE_CHECKS[decode]
    workers = min(16, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = pool.map(lambda c: _problem(check, root / c.path), cands)
        for cand, reason in zip(cands, problems, strict=True):
            if reason is None:
                usable[(cand.split, cand.class_name)] += 1
            else:
                report.add(_kind_of(reason, _DECODE_REASONS, "corrupt"),
                           [f"{cand.path}: {reason}"])
    return usable


def broken_links(root: Path) -> tuple[list[str], list[str]]:
    """(broken symbolic links, unreadable folders) anywhere below ``root``, hidden folders
    included, symlinked folders not followed: what DVC trips over while hashing."""
    broken, unreadable, stack = [], [], [root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            unreadable.append(folder.relative_to(root).as_posix())
            continue
        for entry in entries:
            if entry.is_symlink():
                if not os.path.exists(entry.path):
                    broken.append(Path(entry.path).relative_to(root).as_posix())
            elif entry.is_dir():
                stack.append(Path(entry.path))
    return sorted(broken), sorted(unreadable)


def _record_ignored(report: CheckReport, ignored: list[dict[str, str]]) -> None:
    by_kind: dict[str, list[str]] = {}
    for item in ignored:
        by_kind.setdefault(_kind_of(item["reason"], _IGNORED_REASONS, "non_image"), []).append(
            item["path"])
    for kind, paths in by_kind.items():
        if kind not in ("broken_link", "unreadable_folder"):  # found by broken_links()
            report.add(kind, sorted(paths))


def _finish(root: Path, report: CheckReport, cands: list[Candidate], decode: bool,
            folders: dict[tuple[str, str], list[str]]) -> CheckReport:
    """File checks, counts, class checks and the group hint, shared by every source."""
    links, unreadable = broken_links(root)
    report.add("broken_link", links)
    report.add("unreadable_folder", unreadable)
    if len(report.classes) < 2:
        report.add("few_classes", report.classes or ["none found"])
    usable = _check_files(root, cands, report, decode)
    listed = Counter((c.split, c.class_name) for c in cands)
    for (split, name), where in folders.items():
        if listed[(split, name)] == 0:
            report.add("empty_class", where)
        elif usable[(split, name)] == 0:
            report.add("no_readable", where)
    report.counts = {s: {c: usable[(s, c)] for c in report.classes}
                     for s in dict.fromkeys(s for s, _ in folders)}
    report.files, report.decoded = len(cands), decode
    splits = [c.split for c in cands] if report.layout == "splits" else None
    report.group_hint = suggest_group_pattern([c.path for c in cands], splits)
    return report


def check_folder(root: str | os.PathLike, layout: str = "auto",
                 decode: bool = False) -> CheckReport:
    """Preflight a folder source: ``data.source: folder`` with ``data.layout: layout``."""
    from medclass.data.folder_source import list_folder
    from medclass.data.layout import detect_layout

    root = Path(root)
    report = CheckReport(str(root))
    try:
        found = detect_layout(root, layout)
    except MedclassError as exc:
        report.error = str(exc)
        return report
    report.layout, report.split_folders = found.kind, dict(found.split_folders)
    report.classes = sorted(set().union(*(set(c) for c in found.splits.values())))
    ignored = list(found.ignored)
    cands = list_folder(root, found, ignored)
    _record_ignored(report, ignored)
    folders = {(split, name): [path.relative_to(root).as_posix()]
               for split, classes in found.splits.items() for name, path in classes.items()}
    return _finish(root, report, cands, decode, folders)


def check_csv(root: str | os.PathLike, csv_file: str, image_column: str, label_column: str,
              decode: bool = False) -> CheckReport:
    """Preflight ``data.source: csv`` (the label file relative to ``root``, or absolute)."""
    from medclass.config import DataParams
    from medclass.config.data import CsvParams
    from medclass.data.csv_source import list_csv

    root = Path(root)
    report = CheckReport(str(root), layout="csv")
    ignored: list[dict[str, str]] = []
    try:
        params = DataParams(source="csv", path=str(root), csv=CsvParams(
            file=csv_file, image_column=image_column, label_column=label_column))
        listing = list_csv(params, ignored)
    except MedclassError as exc:
        report.error = str(exc)
        return report
    except ValueError as exc:  # pydantic: an empty column name
        report.error = f"--csv options: {exception_line(exc)}; give non-empty column names"
        return report
    report.classes = list(listing.classes)
    _record_ignored(report, ignored)
    for kind, key in (("csv_missing", "missing_files"), ("csv_unlisted", "unlisted_files"),
                      ("csv_conflict", "label_conflicts"), ("csv_empty", "empty_cells")):
        entry = listing.report[key]
        report.add(kind, entry["examples"], entry["count"])
    splits = sorted({c.split for c in listing.candidates}) or [""]
    folders = {(s, c): [f"{s}/{c}" if s else c] for s in splits for c in report.classes}
    return _finish(root, report, listing.candidates, decode, folders)
