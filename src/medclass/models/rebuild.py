"""Rebuild a model from checkpoint metadata: the one place train, evaluate and export do it."""

from __future__ import annotations

from typing import Any

from torch import nn

from medclass.models.registry import create_model


def model_from_meta(meta: dict[str, Any]) -> nn.Module:
    """The backbone ``meta`` describes, with random weights.

    ``meta`` holds ``model``, ``classes``, ``channels``, ``image_size`` and optionally
    ``drop_rate`` and ``model_kwargs``; ``reparameterized`` (an export's fused weights) fuses
    the fresh model first so the state dict fits.
    """
    model = create_model(
        meta["model"],
        num_classes=len(meta["classes"]),
        in_chans=int(meta["channels"]),
        drop_rate=float(meta.get("drop_rate", 0.0)),
        image_size=int(meta["image_size"]),
        **meta.get("model_kwargs", {}),
    )
    if meta.get("reparameterized"):
        model.reparameterize()
    return model


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild a model from a checkpoint's ``meta`` and load its ``model`` weights."""
    model = model_from_meta(ckpt["meta"])
    model.load_state_dict(ckpt["model"])
    return model
