"""Model zoo: importing this package registers every backbone family module in it."""

import importlib
import pkgutil

from medclass.models.registry import (
    create_model,
    get_spec,
    head_and_backbone_params,
    list_models,
    register,
)

_NOT_FAMILIES = {
    "registry", "base", "layers", "stages", "tokens", "timm_adapter", "checks", "groups"
}
for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _NOT_FAMILIES and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

from medclass.models.groups import layer_decay_scales, layer_groups  # noqa: E402

__all__ = ["create_model", "get_spec", "head_and_backbone_params", "layer_decay_scales",
           "layer_groups", "list_models", "register"]
