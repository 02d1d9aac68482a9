"""The model registry: ``@register`` backbones, ``create_model`` builds them, timm via ``timm/``."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from medclass.errors import MedclassError

TIMM_PREFIX = "timm/"


@dataclass(frozen=True)
class ModelSpec:
    """A registered backbone and its defaults (overridable from params)."""

    name: str
    builder: Callable[..., nn.Module]
    family: str
    min_size: int = 8
    default_size: int = 224
    has_pretrained: bool = False
    lr_mult: float = 1.0  # backbone LR multiplier suggested for this family
    scheduler: str = "cosine"  # suggested schedule: cosine (attention models) or onecycle (CNNs)
    size_multiple: int = 1  # input side must be a multiple of this (patch/window rules)


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str, *, family: str, **spec: Any
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder ``fn(num_classes, in_chans, drop_rate, **kwargs) -> nn.Module``.

    ``spec`` sets the other ``ModelSpec`` defaults (``min_size``, ``default_size``, ``lr_mult``,
    ``scheduler``, ``size_multiple``).
    """

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name, fn, family, **spec)
        return fn

    return deco


def register_model(
    name: str, doc: str, *, family: str, defaults: dict[str, Any] | None = None, **spec: Any
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: register ``cls(num_classes, in_chans, drop_rate=…, **options)`` as ``name``.

    ``doc`` describes the registered configuration; ``defaults`` are constructor options that
    ``model_kwargs`` may override; ``spec`` as for ``register``. Stack it to register variants.
    """

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        def build(num_classes: int, in_chans: int = 3, drop_rate: float = 0.0,
                  **kw: Any) -> nn.Module:
            return cls(num_classes, in_chans, drop_rate=drop_rate, **{**(defaults or {}), **kw})

        build.__name__ = build.__qualname__ = name
        build.__doc__ = doc
        register(name, family=family, **spec)(build)
        return cls

    return deco


def _ensure_loaded() -> None:
    import medclass.models  # noqa: F401  (imports every family module, filling the registry)


def list_models() -> list[str]:
    """Names of the registered from-scratch backbones (timm ones are ``timm/<name>``)."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """Spec of a registered backbone, or of a ``timm/<name>`` one."""
    check_model_name(name)
    if name.startswith(TIMM_PREFIX):
        from medclass.models.timm_adapter import timm_spec

        return timm_spec(name)
    return _REGISTRY[name]


def check_model_name(name: str) -> None:
    """Raise a one-line error listing close matches when ``name`` is not a known backbone."""
    _ensure_loaded()
    if name.startswith(TIMM_PREFIX):
        import timm

        base = name[len(TIMM_PREFIX) :]
        if timm.is_model(base):
            return
        close = difflib.get_close_matches(base, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else ""
        raise MedclassError(f"model: unknown timm backbone {base!r}{hint}")
    if name in _REGISTRY:
        return
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise MedclassError(
        f"model: unknown backbone {name!r}; {hint}"
        f"registered: {', '.join(sorted(_REGISTRY))} or timm/<timm name>"
    )


def create_model(
    name: str,
    num_classes: int,
    in_chans: int = 3,
    *,
    pretrained: str = "none",
    drop_rate: float = 0.0,
    image_size: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a backbone with a ``num_classes`` head; the one door to every model.

    ``image_size`` matters only for timm models with a fixed input size (ViT, Swin, MaxViT, …),
    which are built for that size; our own backbones adapt to any input at run time.
    """
    check_model_name(name)
    if name.startswith(TIMM_PREFIX):
        from medclass.models.timm_adapter import create_timm_model

        return create_timm_model(
            name[len(TIMM_PREFIX) :], num_classes, in_chans, pretrained, drop_rate,
            image_size=image_size, **kwargs
        )
    if pretrained != "none":
        raise MedclassError(
            f"train.pretrained: {name!r} is trained from scratch and has no pretrained weights; "
            "set train.pretrained: none or use a timm/<name> backbone"
        )
    try:
        return _REGISTRY[name].builder(
            num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, **kwargs
        )
    except TypeError as exc:
        raise MedclassError(
            f"train.model_kwargs: {name!r} rejects the given options ({exc})"
        ) from exc


def head_and_backbone_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split parameters into the classifier head and the rest (the backbone)."""
    head = model.get_classifier()
    head_ids = {id(p) for p in head.parameters()} if isinstance(head, nn.Module) else set()
    head_params = [p for p in model.parameters() if id(p) in head_ids]
    backbone_params = [p for p in model.parameters() if id(p) not in head_ids]
    if not head_params:
        raise MedclassError(f"{type(model).__name__}: get_classifier() has no parameters")
    return head_params, backbone_params
