"""Hybrid ViT: adaptive conv stem, class token, resized position embeddings."""

import pytest
import torch

from medclass.errors import MedclassError
from medclass.models import create_model, head_and_backbone_params
from medclass.models.checks import TINY_KWARGS
from medclass.models.vit_hybrid import ConvStem, VitHybrid

NAME = "vit_hybrid"
TINY = {**TINY_KWARGS[NAME], "drop_path_rate": 0.1}


@pytest.mark.parametrize(("size", "grid"), [(16, 8), (28, 7), (32, 8), (64, 8), (224, 14)])
def test_stem_token_grid(size, grid):
    stem = ConvStem(1, 8).eval()
    with torch.no_grad():
        assert stem(torch.randn(1, 1, size, size)).shape == (1, 8, grid, grid)


def test_tokens_carry_class_token_and_resized_positions():
    model = VitHybrid(2, **TINY).eval()
    assert model.pos_embed.shape == (1, 1 + 14 * 14, 16)
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, 28, 28))
    assert feats.shape == (2, 1 + 7 * 7, 16)


def test_head_reads_only_the_class_token():
    model = VitHybrid(2, **TINY).eval()
    feats = torch.randn(2, 50, 16)
    other = feats.clone()
    other[:, 1:] = torch.randn(2, 49, 16)
    assert torch.equal(model.forward_head(feats), model.forward_head(other))


# --- head group, option validation and stochastic depth ---


def test_head_group_is_the_classifier_after_reset():
    model = create_model(NAME, num_classes=3, **TINY)
    model.reset_classifier(5)
    assert model.num_classes == 5
    head, backbone = head_and_backbone_params(model)
    assert {id(p) for p in head} == {id(p) for p in model.get_classifier().parameters()}
    assert len(head) + len(backbone) == len(list(model.parameters()))


def test_unknown_kwarg_is_rejected():
    with pytest.raises(MedclassError, match="model_kwargs"):
        create_model(NAME, num_classes=2, bogus=1)


def test_stochastic_depth_increases_linearly():
    from timm.layers import DropPath

    model = create_model(NAME, num_classes=2, **TINY)
    probs = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    assert probs and probs == sorted(probs)
    assert max(probs) == pytest.approx(0.1)
