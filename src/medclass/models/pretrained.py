"""Provenance of pretrained weights: which file a model's weights were loaded from, and its
SHA-256, for the checkpoint metadata (a replaced or re-published file is visible there)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from torch import nn

from medclass.errors import MedclassError

HF_DEFAULT_FILE = "pytorch_model.bin"  # the Hub file timm loads when a config names none
_SAFE_TWINS = {"pytorch_model.bin": "model.safetensors",
               "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}

Provenance = dict[str, str | None]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hub_filenames(filename: str | None) -> list[str]:
    """The Hub files timm tries for a config's ``hf_hub_filename``, in its order: the
    safetensors twin of a ``.bin`` first, then the file itself."""
    name = filename or HF_DEFAULT_FILE
    if name.endswith(".bin"):
        return [_SAFE_TWINS.get(name, name[: -len(".bin")] + ".safetensors"), name]
    return [name]


def _cached_hub_file(hub_id: str, filename: str | None) -> tuple[str, Path] | None:
    """``(hf-hub:<repo>/<file>[@rev], path)`` of the first candidate in the local HF cache."""
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = hub_id.partition("@")
    for name in hub_filenames(filename):
        found = try_to_load_from_cache(repo, name, revision=revision or None)
        if isinstance(found, str):  # None: unknown; a sentinel object: known to be absent
            return f"hf-hub:{repo}/{name}" + (f"@{revision}" if revision else ""), Path(found)
    return None


def _cached_url_file(url: str) -> tuple[str, Path] | None:
    """``(url, path)`` of a URL download in torch's hub cache (``<hub dir>/checkpoints``)."""
    import torch.hub

    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    return (url, path) if path.is_file() else None


def hub_weights_file(cfg: Mapping[str, Any]) -> tuple[str, Path]:
    """Where timm's hub weights for ``cfg`` (a model's ``pretrained_cfg``) came from: the
    Hugging Face Hub file when the config names a Hub repo, else its URL; found in the local
    caches, which timm's download filled."""
    hub_id, url = cfg.get("hf_hub_id"), cfg.get("url")
    if hub_id:
        found = _cached_hub_file(hub_id, cfg.get("hf_hub_filename"))
    else:
        found = _cached_url_file(url) if isinstance(url, str) and url else None
    if found is None:
        raise MedclassError(
            f"train.pretrained: the hub weights of timm/{cfg.get('architecture', '?')} are not "
            "in the local Hugging Face or torch hub cache, so their SHA-256 cannot be recorded; "
            "download the file into weights/, `dvc add` it and set train.pretrained: "
            "weights/<file>")
    return found


def no_weights() -> Provenance:
    """The provenance of a randomly initialised model (``train.pretrained: none``)."""
    return {"pretrained_file": None, "pretrained_sha256": None}


def pretrained_provenance(model: nn.Module, pretrained: str) -> Provenance:
    """``pretrained_file`` and ``pretrained_sha256`` of the weights ``model`` was built with
    (``train.pretrained``): both None for ``none``; a local file's path as given (repo-relative
    under ``weights/``); ``hf-hub:<repo id>/<file>`` for hub weights."""
    if pretrained == "none":
        return no_weights()
    if pretrained == "hub":
        label, path = hub_weights_file(getattr(model, "pretrained_cfg", None) or {})
    else:
        label, path = PurePosixPath(pretrained.replace("\\", "/")).as_posix(), Path(pretrained)
    return {"pretrained_file": label, "pretrained_sha256": file_sha256(path)}
