"""The interface every registered backbone shares, checked once per name (tiny widths)."""

import pytest
import torch
from timm.layers import DropPath

from medclass.errors import MedclassError
from medclass.models import create_model, get_spec, head_and_backbone_params, list_models
from medclass.models.checks import TINY_KWARGS

ATTENTION = {"vit_hybrid", "deit", "swin", "coatnet", "maxvit"}
NO_DROP_PATH = {"simple_cnn", "simple_cnn_tiny"}  # plain conv stacks without residual branches


def _tiny(name: str, **kw):
    base = name.removesuffix("_tiny")
    return create_model(name, num_classes=3, in_chans=3, **{**TINY_KWARGS.get(base, {}), **kw})


@pytest.mark.parametrize("name", list_models())
def test_head_group_is_the_classifier_after_reset(name):
    model = _tiny(name)
    model.reset_classifier(5)
    assert model.num_classes == 5
    head, backbone = head_and_backbone_params(model)
    assert {id(p) for p in head} == {id(p) for p in model.get_classifier().parameters()}
    assert len(head) + len(backbone) == len(list(model.parameters()))
    model.eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize("name", list_models())
def test_unknown_kwarg_is_rejected(name):
    with pytest.raises(MedclassError, match="model_kwargs"):
        create_model(name, num_classes=2, bogus=1)


@pytest.mark.parametrize("name", sorted(set(list_models()) - NO_DROP_PATH))
def test_stochastic_depth_increases_linearly_up_to_the_given_rate(name):
    # default widths: tiny ones may have no residual block to drop (only shortcuts get DropPath)
    model = create_model(name, num_classes=3, drop_path_rate=0.3)
    probs = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    assert probs, "drop_path_rate has no effect"
    assert probs == sorted(probs) and 0.2 <= max(probs) <= 0.3 + 1e-6


@pytest.mark.parametrize("name", list_models())
def test_registered_defaults_follow_the_family(name):
    spec = get_spec(name)
    assert 8 <= spec.min_size <= 28 <= spec.default_size
    if name in ATTENTION:
        assert spec.lr_mult < 1.0 and spec.scheduler == "cosine"
    else:
        assert spec.lr_mult == 1.0 and spec.scheduler in {"onecycle", "cosine"}
