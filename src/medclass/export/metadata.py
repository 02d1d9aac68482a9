"""Export metadata: what a runtime needs to preprocess inputs and read outputs of an artifact.

Every exported artifact ships with the same metadata (``models/export/metadata.json``, also
embedded in ``model.pt``, the TorchScript archive and the ONNX file). Inputs are NCHW float32:
decode the image to grayscale/RGB (``medclass.data.images``), convert to ``channels``, squash
to ``image_size``² with bilinear (antialiased) resampling, then ``(pixel / 255 - mean) / std``
per channel. Outputs are logits; probabilities are ``softmax(logits / temperature)``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from medclass.errors import MedclassError
from medclass.io import read_json

METADATA_FILE = "metadata.json"
STATUS_KEY = "export_status"  # {format: status} of the bundle, added to metadata.json after export
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
FORMAT_VERSION = 1
PREPROCESSING = (
    "decode to 8-bit grayscale or RGB (medclass.data.images.load_image), convert to `channels`, "
    "resize to image_size x image_size (PIL bilinear, aspect ratio not kept), "
    "x = (pixel / 255 - mean[c]) / std[c]; layout NCHW float32"
)
_REQUIRED = ("model", "classes", "image_size", "channels", "mean", "std")


def dvc_md5(path: str | Path, lock: str | Path = "dvc.lock") -> str | None:
    """The md5 DVC recorded for output ``path`` in ``dvc.lock`` (None when unknown)."""
    try:
        data = yaml.safe_load(Path(lock).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    for stage in (data.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") == Path(path).as_posix():
                return out.get("md5")
    return None


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_metadata(
    ckpt_meta: dict[str, Any],
    *,
    checkpoint: str | Path | None = None,
    test_metrics: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    reparameterized: bool = False,
) -> dict[str, Any]:
    """Metadata for the exported artifacts from a training checkpoint's ``meta``.

    The temperature comes from ``calibration`` (``models/calibration.json`` of the evaluate
    stage) when given, else from the checkpoint, else 1.0 (uncalibrated).
    """
    missing = [k for k in _REQUIRED if k not in ckpt_meta]
    if missing:
        raise MedclassError(f"checkpoint metadata lacks {missing}; rerun `dvc repro finetune`")
    channels, size = int(ckpt_meta["channels"]), int(ckpt_meta["image_size"])
    classes = list(ckpt_meta["classes"])
    # No git commit or dirty flag: the bundle must be the same bytes in any clone at any
    # commit with the same inputs (repro.mode exact); the checkpoint's hashes identify it.
    revision: dict[str, Any] = {}
    if checkpoint is not None:
        revision["checkpoint"] = Path(checkpoint).as_posix()
        revision["checkpoint_sha256"] = sha256(checkpoint)
        revision["dvc_md5"] = dvc_md5(checkpoint)
    epoch = ckpt_meta.get("epoch")
    temperature = float((calibration or {}).get("temperature") or
                        ckpt_meta.get("temperature") or 1.0)
    return {
        "format_version": FORMAT_VERSION,
        "model": ckpt_meta["model"],
        "model_kwargs": dict(ckpt_meta.get("model_kwargs", {})),
        "drop_rate": float(ckpt_meta.get("drop_rate", 0.0)),
        "reparameterized": reparameterized,
        "classes": classes,
        "image_size": size,
        "channels": channels,
        "mean": [float(v) for v in ckpt_meta["mean"]],
        "std": [float(v) for v in ckpt_meta["std"]],
        "temperature": temperature,
        "calibration": {k: v for k, v in (calibration or {}).items()
                        if k in ("fitted_on", "method", "n_fit")},
        "best_epoch": int(epoch) + 1 if epoch is not None else None,
        "params": ckpt_meta.get("params", {}),
        "metrics": test_metrics or {},
        "revision": revision,
        "input": {"name": INPUT_NAME, "layout": "NCHW", "dtype": "float32",
                  "shape": ["batch", channels, size, size], "preprocessing": PREPROCESSING},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", len(classes)],
                   "probabilities": "softmax(logits / temperature)"},
    }


def check_metadata(meta: Any, source: str) -> dict[str, Any]:
    """Validate metadata read from ``source``; raise a one-line ``MedclassError`` if unusable."""
    if not isinstance(meta, dict):
        raise MedclassError(f"{source}: metadata is not a JSON object")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise MedclassError(f"{source}: metadata lacks {missing}; re-export the model")
    channels = int(meta["channels"])
    if len(meta["mean"]) != channels or len(meta["std"]) != channels:
        raise MedclassError(f"{source}: mean/std do not have {channels} channel values")
    temperature = float(meta.get("temperature") or 1.0)
    if temperature <= 0:
        raise MedclassError(f"{source}: temperature must be > 0, got {temperature}")
    return {**meta, "temperature": temperature}


def sidecar_metadata(artifact: str | Path) -> dict[str, Any]:
    """Metadata beside an artifact: ``<file>.json``, ``<stem>.json`` or ``metadata.json``."""
    p = Path(artifact)
    candidates = [p.with_name(p.name + ".json"), p.with_suffix(".json"), p.parent / METADATA_FILE]
    for c in candidates:
        if c.is_file() and c != p:
            return check_metadata(read_json(c), str(c))
    raise MedclassError(
        f"{p}: no metadata found (expected {candidates[-1]} or {candidates[0].name} beside it); "
        "export with `dvc repro export`"
    )


def bundle_statuses(artifact: str | Path) -> dict[str, str] | None:
    """``{format: status}`` the export recorded in the ``metadata.json`` beside ``artifact``."""
    path = Path(artifact).parent / METADATA_FILE
    doc = read_json(path) if path.is_file() else None
    statuses = doc.get(STATUS_KEY) if isinstance(doc, dict) else None
    return dict(statuses) if isinstance(statuses, dict) else None
