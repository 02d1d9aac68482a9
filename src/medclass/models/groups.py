"""Layer groups of a backbone, input to output, for layer-wise LR decay and staged unfreezing.

- timm models describe their own groups (``group_matcher``); we use timm's grouping.
- Our backbones list them in ``ClassifierModel.group_modules()``: the stem, then each block of
  the ``features``/``blocks``/``stages`` containers in order, then the top (final norm, neck).
  Parameters owned directly by the root module (class token, position embedding) join the first
  group, as in timm. Families with parallel branches may override ``group_modules``.
- Any other ``nn.Module``: one group per top-level child, in registration order.

The classifier (``get_classifier()``) is never part of a layer group: it is the head.
"""

from __future__ import annotations

from torch import nn

from medclass.models.registry import head_and_backbone_params

EXPANDED_CONTAINERS = ("features", "blocks", "stages")


def default_group_modules(model: nn.Module) -> list[nn.Module]:
    """Top-level children in order, with the usual block containers expanded one level."""
    groups: list[nn.Module] = []
    for name, child in model.named_children():
        if name in EXPANDED_CONTAINERS and isinstance(child, (nn.Sequential, nn.ModuleList)):
            groups.extend(child.children())
        else:
            groups.append(child)
    return groups


def _timm_groups(model: nn.Module) -> list[list[str]]:
    from timm.models import group_parameters

    grouped = group_parameters(model, model.group_matcher(coarse=False))
    return [grouped[k] for k in sorted(grouped)]


def _module_groups(model: nn.Module) -> list[list[str]]:
    modules = model.group_modules() if hasattr(model, "group_modules") else None
    if modules is None:
        modules = default_group_modules(model)
    owner = {id(p): i for i, m in enumerate(modules) for p in m.parameters()}
    groups: list[list[str]] = [[] for _ in modules]
    for name, p in model.named_parameters():
        # root-level tensors (tokens, position embeddings) sit at the input: first group
        groups[owner.get(id(p), 0)].append(name)
    return groups


def layer_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """Backbone parameters in groups ordered from the input (0) to the last block.

    Every backbone parameter appears in exactly one group; head parameters in none; groups
    without parameters (pooling, dropout) are dropped.
    """
    head, _ = head_and_backbone_params(model)
    head_ids = {id(p) for p in head}
    params = dict(model.named_parameters())
    names = _timm_groups(model) if hasattr(model, "group_matcher") else _module_groups(model)
    groups = [[params[n] for n in g if id(params[n]) not in head_ids] for g in names]
    return [g for g in groups if g]


def layer_decay_scales(n_groups: int, decay: float) -> list[float]:
    """LR scale per group: ``decay ** (n_groups - 1 - i)``; the last block keeps the full LR."""
    return [decay ** (n_groups - 1 - i) for i in range(n_groups)]
