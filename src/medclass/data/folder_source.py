"""``data.source: folder``: list the image files of a class-folder tree, flat or pre-split.

Layouts (``layout.detect_layout``): ``<class>/…`` or ``<split>/<class>/…``. Files may sit in
nested subfolders of a class folder; hidden files and folders, symlinked folders, broken links
and non-image extensions are listed as ignored with their reason. DICOM files are recognised by
extension or by their magic bytes (scanner exports often have no extension).
"""

from __future__ import annotations

import os
from pathlib import Path

from medclass.data.dicom import is_dicom
from medclass.data.images import IMAGE_EXTENSIONS, is_hidden
from medclass.data.ingest import Candidate
from medclass.data.layout import Layout

Ignored = list[dict[str, str]]


def _keep_dirs(here: Path, dirnames: list[str], rel, ignored: Ignored) -> list[str]:
    keep = []
    for d in sorted(dirnames):
        if is_hidden(d):
            ignored.append({"path": rel(here / d), "reason": "hidden"})
        elif (here / d).is_symlink():
            ignored.append({"path": rel(here / d), "reason": "symlinked folder not followed"})
        else:
            keep.append(d)
    return keep


def _classify_file(path: Path) -> str | None:
    """None for an image/DICOM file, else the reason it is ignored."""
    if is_hidden(path):
        return "hidden"
    if path.is_symlink() and not path.exists():
        return "broken symbolic link"
    if path.suffix.lower() in IMAGE_EXTENSIONS or is_dicom(path):
        return None
    return "not an image file extension"


def walk_images(folder: Path, root: Path, ignored: Ignored) -> list[Path]:
    """Image and DICOM files below ``folder`` (sorted; no symlinked folders, no hidden)."""
    found: list[Path] = []

    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix()

    def on_error(err: OSError) -> None:
        where = Path(err.filename) if err.filename else folder
        ignored.append({"path": rel(where), "reason": f"unreadable folder ({err.strerror})"})

    for dirpath, dirnames, filenames in os.walk(folder, onerror=on_error, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = _keep_dirs(here, dirnames, rel, ignored)
        for f in sorted(filenames):
            reason = _classify_file(here / f)
            if reason is None:
                found.append(here / f)
            else:
                ignored.append({"path": rel(here / f), "reason": reason})
    return found


def list_folder(root: Path, layout: Layout, ignored: Ignored) -> list[Candidate]:
    """Every image of every class folder (of every split folder), in split, class, path order."""
    out: list[Candidate] = []
    for split, classes in layout.splits.items():
        for name in sorted(classes):
            for path in walk_images(classes[name], root, ignored):
                out.append(Candidate(path.relative_to(root).as_posix(), name, split))
    return out
