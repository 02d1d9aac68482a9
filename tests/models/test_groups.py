"""Layer groups (for layer-wise LR decay) of every backbone: complete, disjoint, input→output."""

import pytest
import torch
from torch import nn

from medclass.models import create_model, head_and_backbone_params, layer_groups, list_models
from medclass.models.checks import TINY_KWARGS
from medclass.models.groups import layer_decay_scales


def _tiny(name: str) -> nn.Module:
    base = name.removesuffix("_tiny")
    return create_model(name, num_classes=3, in_chans=3, **TINY_KWARGS.get(base, {}))


# Families whose branches run one after the other in forward() but side by side in depth:
# groups follow depth, so forward order is checked within each branch.
PARALLEL = {"dual_branch": ("global_branch", "local_branch")}


def _call_order(model: nn.Module, x: torch.Tensor) -> list[nn.Parameter]:
    """Parameters of non-root modules in the order the forward pass first uses them."""
    order: list[nn.Parameter] = []
    seen: set[int] = set()

    def hook(module: nn.Module, *_: object) -> None:
        for p in module.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                order.append(p)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if m is not model and any(True for _ in m.parameters(recurse=False))]
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return order


@pytest.mark.parametrize("name", list_models())
def test_groups_cover_the_backbone_once_in_forward_order(name):
    model = _tiny(name)
    groups = layer_groups(model)
    head, backbone = head_and_backbone_params(model)
    ids = [id(p) for g in groups for p in g]
    assert len(ids) == len(set(ids)), "a parameter is in two groups"
    assert set(ids) == {id(p) for p in backbone}, "groups must be exactly the backbone"
    assert len(groups) >= 3, "too few groups for layer-wise decay"
    group_of = {id(p): i for i, g in enumerate(groups) for p in g}
    order = _call_order(model, torch.randn(1, 3, 32, 32))
    used = [group_of[id(p)] for p in order if id(p) in group_of]
    assert used[0] == 0, "the first layer the input meets must be in group 0"
    branches = [getattr(model, b) for b in PARALLEL.get(name, ())] or [model]
    for branch in branches:
        mine = {id(p) for p in branch.parameters()}
        seq = [group_of[id(p)] for p in order if id(p) in group_of and id(p) in mine]
        assert seq == sorted(seq), f"groups out of forward order: {seq}"


def test_timm_models_use_timms_own_grouping():
    model = create_model("timm/resnet18", num_classes=3)
    groups = layer_groups(model)
    assert len(groups) == 9  # stem + 8 basic blocks (layer1..4 × 2); fc is the head
    assert groups[0][0] is model.conv1.weight
    assert id(model.fc.weight) not in {id(p) for g in groups for p in g}


def test_layer_decay_scales_are_geometric_from_the_top():
    assert layer_decay_scales(4, 0.5) == [0.125, 0.25, 0.5, 1.0]
    assert layer_decay_scales(3, 1.0) == [1.0, 1.0, 1.0]
