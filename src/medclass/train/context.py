"""Build what a training stage needs from params: seeds, the model and its checkpoint metadata.

Data loading is ``data.bundle``; device and precision are ``medclass.inference``; rebuilding a
model from checkpoint metadata is ``models.rebuild``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medclass import repro
from medclass.config import Params
from medclass.data.bundle import DataBundle
from medclass.errors import MedclassError
from medclass.models import create_model, get_spec
from medclass.models.pretrained import Provenance


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


def check_image_size(model_name: str, image_size: int) -> None:
    """Refuse an image size below the backbone's minimum before any heavy work."""
    spec = get_spec(model_name)
    if image_size < spec.min_size:
        raise MedclassError(
            f"data.image_size: {image_size} px is below {model_name}'s minimum of "
            f"{spec.min_size} px; raise data.image_size"
        )


def build_model(params: Params, num_classes: int, in_chans: int) -> nn.Module:
    """The backbone named by ``params.model`` with a ``num_classes`` head.

    ``train.drop_path`` > 0 is passed as ``drop_path_rate`` (stochastic depth, timm's
    convention, also our backbones'); a backbone without it is refused in one line.
    """
    kwargs = dict(params.train.model_kwargs)
    rate = params.train.drop_path
    if rate:
        kwargs["drop_path_rate"] = rate
    no_drop_path = MedclassError(
        f"train.drop_path: {params.model} has no stochastic depth (drop_path_rate); "
        "set train.drop_path: 0 or pick a backbone with residual blocks")
    try:
        model = create_model(
            params.model,
            num_classes=num_classes,
            in_chans=in_chans,
            pretrained=params.train.pretrained,
            drop_rate=params.train.drop_rate,
            image_size=params.data.image_size,
            **kwargs,
        )
    except (MedclassError, TypeError) as exc:
        if rate and "drop_path_rate" in f"{exc} {exc.__cause__}":
            raise no_drop_path from None
        raise
    if rate and not any(getattr(m, "drop_prob", 0.0) for m in model.modules()):
        raise no_drop_path  # accepted but ignored (e.g. a timm model taking **kwargs)
    return model


TRAINING_GROUPS = ("repro", "model", "seed", "train", "head", "finetune")


def model_meta(params: Params, data: DataBundle, weights: Provenance,
               groups: tuple[str, ...] = TRAINING_GROUPS) -> dict[str, Any]:
    """Metadata stored with every checkpoint: enough to rebuild and preprocess, plus where the
    initial weights came from (``weights``: ``models.pretrained.pretrained_provenance``).

    Only the params ``groups`` are recorded: a checkpoint's bytes may depend on nothing but
    what its stage declares in dvc.yaml, or a params change elsewhere (``kfold.folds``) would
    leave a committed checkpoint that a fresh ``dvc repro -f`` writes differently."""
    dump = params.model_dump(mode="json")
    return {
        "model": params.model,
        "model_kwargs": dict(params.train.model_kwargs),
        "drop_rate": params.train.drop_rate,
        "classes": data.classes,
        "image_size": data.image_size,
        "channels": data.in_chans,
        "mean": data.stats["mean"],
        "std": data.stats["std"],
        "params": {k: dump[k] for k in groups},
        "repro": repro.settings(params.repro.mode, params.repro.threads),
        **weights,
    }


def fingerprint(*parts: Any, files: tuple[Path, ...] = ()) -> str:
    """Stable hash of JSON-able parts and file contents (decides whether a resume is valid)."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
