"""``timm/<name>`` backbones: any timm model, with local-file or hub pretrained weights."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import timm
from torch import nn

from medclass.errors import MedclassError
from medclass.models.registry import TIMM_PREFIX, ModelSpec


def timm_spec(name: str) -> ModelSpec:
    """Spec for a timm backbone from its pretrained config (input size)."""
    base = name[len(TIMM_PREFIX) :]
    cfg = timm.get_pretrained_cfg(base)
    size = int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else 224
    attention = takes_img_size(base)  # fixed-size archs are the attention ones (ViT, Swin, …)
    return ModelSpec(name, create_timm_model, "timm", min_size=32, default_size=size,
                     has_pretrained=True, lr_mult=0.5 if attention else 1.0,
                     scheduler="cosine" if attention else "onecycle")


def takes_img_size(base: str) -> bool:
    """Whether a timm architecture is built for a fixed input size (its class has ``img_size``).

    Such models (ViT, Swin, MaxViT, CoAtNet, …) are created for the training resolution; CNNs
    take any input size and are left alone.
    """
    module = sys.modules[timm.models.model_entrypoint(base).__module__]
    for _, cls in inspect.getmembers(module, inspect.isclass):
        own = issubclass(cls, nn.Module) and cls.__module__ == module.__name__
        if own and "img_size" in inspect.signature(cls.__init__).parameters:
            return True
    return False


def create_timm_model(
    base: str,
    num_classes: int,
    in_chans: int,
    pretrained: str,
    drop_rate: float,
    image_size: int | None = None,
    **kwargs,
) -> nn.Module:
    """Build ``timm.create_model(base)``; ``pretrained`` is ``none``, ``hub`` or a file path."""
    kwargs = dict(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, **kwargs)
    if image_size is not None and takes_img_size(base):
        kwargs.setdefault("img_size", image_size)
    if pretrained == "none":
        return timm.create_model(base, pretrained=False, **kwargs)
    if pretrained == "hub":
        try:
            return timm.create_model(base, pretrained=True, **kwargs)
        except Exception as exc:  # network errors come in many types (OSError, HF hub errors)
            raise MedclassError(
                f"train.pretrained: could not fetch hub weights for timm/{base} "
                f"({type(exc).__name__}); offline? download the weights file into weights/, "
                "`dvc add` it and set train.pretrained: weights/<file>.safetensors"
            ) from exc
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise MedclassError(
            f"train.pretrained: weights file {path} not found; `dvc pull` it, or put the "
            ".safetensors/.pth file there and `dvc add` it, or use 'hub' (online) or 'none'"
        )
    try:
        return timm.create_model(
            base, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
        )
    except Exception as exc:
        raise MedclassError(
            f"train.pretrained: {path} does not hold timm/{base} weights ({exc})"
        ) from exc
