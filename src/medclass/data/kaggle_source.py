"""``data.source: kaggle``: a Kaggle dataset (``data.kaggle.handle``) read as a folder source.

``kagglehub.dataset_download(handle)`` fetches the dataset into kagglehub's cache
(``~/.cache/kagglehub``, or ``$KAGGLEHUB_CACHE``) and returns its folder; that folder, or its
``data.kaggle.subdir``, is then ingested exactly like ``data.source: folder`` (one subfolder per
class, DICOM included, bad files reported in the data report).

Credentials: medclass never reads, passes, writes or logs them. kagglehub finds them itself
(``KAGGLE_USERNAME``/``KAGGLE_KEY`` or ``KAGGLE_API_TOKEN`` in the environment, or its own
config); public datasets need none. As a guard, secret values from the environment are
masked in any error message that would echo them. A handle without ``/versions/N`` downloads
the latest version, so a rerun may see different data than the one DVC recorded: pin one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from medclass.config import DataParams
from medclass.data.images import is_hidden
from medclass.errors import MedclassError, exception_line

_SECRET_ENV = ("KAGGLE_KEY", "KAGGLE_API_TOKEN")
_INSTALL = "pip install kagglehub"


def mask_secrets(text: str) -> str:
    """``text`` with the value of every credential environment variable replaced by ``***``."""
    for var in _SECRET_ENV:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _download(handle: str) -> Path:
    try:
        import kagglehub
    except ImportError:
        raise MedclassError(
            f"data.source: kaggle needs the kagglehub package; {_INSTALL} (credentials come "
            "from KAGGLE_USERNAME/KAGGLE_KEY in the environment)"
        ) from None
    if "/versions/" not in handle:
        logging.warning("data.kaggle.handle %r has no /versions/N: the latest version is used, "
                        "so a rerun may see different data; pin a version", handle)
    try:
        path = kagglehub.dataset_download(handle)
    except Exception as exc:  # kagglehub raises its own HTTP/auth errors and requests' errors
        reason = exception_line(exc, with_type=True, limit=200)
        raise MedclassError(mask_secrets(
            f"kaggle download of '{handle}' failed ({reason}); check the handle and the "
            "network, and for private or rules-gated datasets set KAGGLE_USERNAME and "
            "KAGGLE_KEY in the environment"
        )) from None  # the cause may carry request details: keep them out of the output
    return Path(path)


def _folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not is_hidden(p))


def resolve(data: DataParams) -> tuple[DataParams, dict[str, Any]]:
    """Download the dataset; return the ``folder`` params that ingest it and report info."""
    handle, subdir = data.kaggle.handle, data.kaggle.subdir
    if handle is None:  # DataParams validation already requires it for source: kaggle
        raise MedclassError("data.kaggle.handle is not set; use owner/dataset/versions/N")
    base = _download(handle)
    root = base / subdir if subdir else base
    if not root.is_dir():
        have = ", ".join(_folders(base)[:10]) if base.is_dir() else "nothing"
        raise MedclassError(
            f"data.kaggle.subdir '{subdir}' is not a folder in the download of '{handle}' "
            f"(top-level folders: {have}); fix data.kaggle.subdir"
        )
    folders = _folders(root)
    if len(folders) < 2:
        where = f"subdir '{subdir}'" if subdir else "its top level"
        listed = ", ".join(folders) or "none"
        raise MedclassError(
            f"the download of '{handle}' has {len(folders)} folder(s) at {where} ({listed}); "
            "set data.kaggle.subdir to the folder holding one subfolder per class"
        )
    version = base.name if base.parent.name == "versions" else None
    folder_data = data.model_copy(update={"source": "folder", "path": str(root)})
    return folder_data, {"handle": handle, "version": version, "subdir": subdir}
