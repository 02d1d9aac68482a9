"""``data.source: medmnist``: an official MedMNIST 2-D ``.npz``, found locally or downloaded.

The file is ``data.path`` when that names a ``.npz`` file, otherwise
``<data.path>/<name>.npz`` (size 28) or ``<data.path>/<name>_<size>.npz`` (64, 128, 224): the
official file names of the MedMNIST+ Zenodo record (:data:`ZENODO`). When the file is absent
and the optional ``medmnist`` package is importable and zenodo.org is reachable, the package
downloads it (MD5-checked) into a hidden temporary folder next to it, which is then renamed
into place, so an interrupted download never leaves a partial file. Otherwise prepare stops
with one line naming the exact file it needs and where to get it.

The file is then read by the ``npz`` source's ingest (official split kept in the manifest's
``split`` column). Class names: ``data.class_names`` when given, else the dataset's
official label names (:data:`LABELS`, the same on every machine, with or without the package).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from medclass.config import DataParams
from medclass.errors import MedclassError, exception_line

ZENODO = "https://zenodo.org/records/10519652"
_ORGANS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
           "lung-left", "lung-right", "pancreas", "spleen")
# label names in label order, as the medmnist package (3.0.2, ``medmnist.INFO[name]["label"]``)
# spells them; kept here so class names never depend on whether that package is installed
LABELS: dict[str, tuple[str, ...]] = {
    "pathmnist": ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                  "normal colon mucosa", "cancer-associated stroma",
                  "colorectal adenocarcinoma epithelium"),
    "chestmnist": ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule",
                   "pneumonia", "pneumothorax", "consolidation", "edema", "emphysema",
                   "fibrosis", "pleural", "hernia"),
    "dermamnist": ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                   "benign keratosis-like lesions", "dermatofibroma", "melanoma",
                   "melanocytic nevi", "vascular lesions"),
    "octmnist": ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
    "pneumoniamnist": ("normal", "pneumonia"),
    "retinamnist": ("0", "1", "2", "3", "4"),
    "breastmnist": ("malignant", "normal, benign"),
    "bloodmnist": ("basophil", "eosinophil", "erythroblast",
                   "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
                   "lymphocyte", "monocyte", "neutrophil", "platelet"),
    "tissuemnist": ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule",
                    "Glomerular endothelial cells", "Interstitial endothelial cells",
                    "Leukocytes", "Podocytes", "Proximal Tubule Segments",
                    "Thick Ascending Limb"),
    "organamnist": _ORGANS,
    "organcmnist": _ORGANS,
    "organsmnist": _ORGANS,
}
_HOST = "zenodo.org"
_SPLITS = ("train", "val", "test")


def official_filename(name: str, size: int) -> str:
    """``pneumoniamnist.npz`` (28 px) or ``pneumoniamnist_64.npz`` (64/128/224 px)."""
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def expected_file(data: DataParams) -> Path:
    """The local file ``data`` reads: ``data.path`` if it names a ``.npz``, else the official
    file name inside the ``data.path`` folder."""
    path = Path(data.path)
    if path.suffix.lower() == ".npz":
        return path
    return path / official_filename(data.medmnist.name, data.medmnist.size)


def import_medmnist() -> ModuleType | None:
    """The optional ``medmnist`` package, or None when it is not installed (or fails to load)."""
    try:
        import medmnist
    except (ImportError, OSError):  # OSError: it creates ~/.medmnist on import
        return None
    return medmnist


def online(host: str = _HOST, timeout: float = 5.0) -> bool:
    """True when a TCP connection to ``host``:443 opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _missing(target: Path, official: str, why: str) -> MedclassError:
    return MedclassError(
        f"MedMNIST file '{target}' not found{why}; download {official} from {ZENODO} to "
        f"'{target}' (or `pip install medmnist` and rerun with network access to download it)"
    )


def _download(mm: ModuleType, name: str, size: int, target: Path) -> None:
    """Download through the package into a hidden folder beside ``target``; rename into place."""
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".medmnist-download-", dir=folder))
    except OSError as exc:
        raise MedclassError(
            f"cannot create '{folder}' to download MedMNIST {name} into ({exc.strerror}); "
            "check data.path and permissions"
        ) from exc
    try:
        logging.info("downloading MedMNIST %s (%d px) from %s via the medmnist package",
                     name, size, ZENODO)
        dataset_class = getattr(mm, mm.INFO[name]["python_class"])
        dataset_class(split="train", download=True, root=str(scratch), size=size)
        os.replace(scratch / official_filename(name, size), target)
    except Exception as exc:  # the package wraps every network/MD5 failure in RuntimeError
        reason = exception_line(exc)
        raise _missing(target, official_filename(name, size),
                       f" and the download through medmnist failed ({reason})") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _distinct_labels(path: Path) -> int | None:
    """Distinct label values over the three splits (None if unreadable or multi-label: the npz
    ingest then says what is wrong in its own words)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            labels = [npz[f"{s}_labels"] for s in _SPLITS]
    except Exception:  # noqa: BLE001
        return None
    if any(a.ndim > 2 or (a.ndim == 2 and a.shape[1] != 1) for a in labels):
        return None  # e.g. chestmnist's 14 binary columns
    return len(np.unique(np.concatenate([a.reshape(-1) for a in labels])))


def resolve(data: DataParams) -> tuple[DataParams, dict[str, Any]]:
    """Find (or download) the file; return the ``npz`` params that read it and report info."""
    name, size = data.medmnist.name, data.medmnist.size
    target = expected_file(data)
    official = official_filename(name, size)
    if target.name != official:
        logging.warning("data.path names '%s' but MedMNIST %s at %d px is officially '%s'; "
                        "check that it is the right file", target.name, name, size, official)
    mm = import_medmnist()
    if not target.is_file():
        if mm is None:
            raise _missing(target, official, " and the medmnist package is not installed")
        if not online():
            raise _missing(target, official, f" and {_HOST} cannot be reached (offline)")
        _download(mm, name, size, target)
    names = list(data.class_names) if data.class_names is not None else None
    if names is None:
        names = list(LABELS[name])
        found = _distinct_labels(target)
        if found is not None and found != len(names):
            raise MedclassError(
                f"'{target}' has {found} distinct labels but MedMNIST {name} has {len(names)} "
                f"classes; is it the right file? (re-download {official} from {ZENODO})"
            )
    npz_data = data.model_copy(update={"source": "npz", "path": str(target), "class_names": names})
    return npz_data, {"name": name, "size": size, "file": str(target)}
