"""Grad-CAM target layers and maps (captum), penultimate features and 2-D projections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medclass.evaluate.explain import (
    gradcam,
    penultimate_features,
    prefix_tokens,
    project_2d,
    sample_per_class,
)
from medclass.models import create_model
from medclass.models.base import ClassifierModel
from medclass.models.checks import TINY_KWARGS


class _Linear(ClassifierModel):
    """features = the input itself (1 channel), head = mean pool + Linear(1, 2) with w = ±1."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()
        self._init_head(1, 2, 0.0)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.fc.bias.zero_()


def test_gradcam_matches_hand_computed_map() -> None:
    # logit_c = w_c · mean(A): Grad-CAM weight = w_c / (H·W), map = ReLU(w_c · A) / max
    x = torch.tensor([[[[0.0, 1.0, -2.0, 3.0], [4.0, -1.0, 0.5, 2.0],
                        [1.0, 1.0, -3.0, 0.0], [2.0, 0.0, 1.0, -4.0]]]])
    maps, target, layer = gradcam(_Linear(), x.repeat(2, 1, 1, 1), torch.tensor([0, 1]))
    a = x[0, 0].numpy()
    np.testing.assert_allclose(maps[0], np.maximum(a, 0) / 4.0, atol=1e-6)
    np.testing.assert_allclose(maps[1], np.maximum(-a, 0) / 4.0, atol=1e-6)
    assert target.tolist() == [0, 1] and layer == "forward_features output"


class _LinearNHWC(_Linear):
    """The same model with a channels-last feature map, as timm's Swin returns."""

    output_fmt = "NHWC"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return super().forward_head(x.permute(0, 3, 1, 2), pre_logits)


def test_gradcam_channels_last_map_matches_hand_computed_map() -> None:
    x = torch.arange(-6.0, 10.0).reshape(1, 1, 4, 4)
    maps, _, _ = gradcam(_LinearNHWC(), x, torch.tensor([0]))
    np.testing.assert_allclose(maps[0], np.maximum(x[0, 0].numpy(), 0) / 9.0, atol=1e-6)


def test_gradcam_defaults_to_the_predicted_class_and_restores_mode() -> None:
    model = _Linear().train()
    x = torch.stack([torch.ones(1, 4, 4), -torch.ones(1, 4, 4)])
    _, target, _ = gradcam(model, x)
    assert target.tolist() == [0, 1] and model.training


def _tiny(name: str, in_chans: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=3, in_chans=in_chans, image_size=32,
                        **TINY_KWARGS[name])


@pytest.mark.parametrize(("name", "layer"), [
    ("simple_cnn", "forward_features output"),
    ("swin", "forward_features output"),
    ("deit", "patch tokens entering blocks[1]"),
    ("convnext", "layer group"),  # 1×1 final map at 32 px: falls back to a 2×2 group
])
def test_gradcam_per_family(name: str, layer: str) -> None:
    model = _tiny(name)
    blocks = list(model.blocks) if hasattr(model, "blocks") else None
    x = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model.eval()(x)
    maps, target, desc = gradcam(model, x)
    assert maps.shape == (3, 32, 32) and np.isfinite(maps).all()
    assert maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6
    assert max(float(m.std()) for m in maps) > 1e-3  # not constant
    assert desc.startswith(layer)
    assert target.shape == (3,)
    if blocks is not None:  # token models: the wrapped block is put back
        assert list(model.blocks) == blocks
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)


def test_prefix_tokens() -> None:
    assert prefix_tokens(nn.Module(), 51) == 2  # deit: cls + dist + 7×7
    assert prefix_tokens(nn.Module(), 65) == 1  # vit_hybrid: cls + 8×8
    assert prefix_tokens(nn.Module(), 49) == 0
    m = nn.Module()
    m.num_prefix_tokens = 5
    assert prefix_tokens(m, 69) == 5


def test_penultimate_features_and_projection() -> None:
    model = _tiny("simple_cnn")
    x = torch.randint(0, 255, (7, 1, 16, 16), dtype=torch.uint8)
    feats = penultimate_features(model, lambda: iter([(x[:4], None), (x[4:], None)]),
                                 lambda t: t.float() / 255, torch.device("cpu"))
    with torch.no_grad():
        ref = model.forward_head(model.forward_features(x.float() / 255), pre_logits=True)
    np.testing.assert_allclose(feats, ref.numpy(), rtol=1e-5, atol=1e-6)
    for method in ("pca", "tsne"):
        xy = project_2d(feats, method)
        assert xy.shape == (7, 2) and np.isfinite(xy).all()
    # PCA of points on a line: all variance in the first component
    line = np.outer(np.arange(5.0), [1.0, 2.0, 3.0])
    xy = project_2d(line, "pca")
    assert np.allclose(xy[:, 1], 0.0, atol=1e-9) and np.ptp(xy[:, 0]) > 0
    with pytest.raises(ValueError):
        project_2d(feats, "umap")


def test_sample_per_class_is_fixed() -> None:
    labels = np.array([2, 0, 1, 0, 2, 0, 1])
    assert sample_per_class(labels, 2, 3).tolist() == [1, 3, 2, 6, 0, 4]
    assert sample_per_class(labels, 1, 4).tolist() == [1, 2, 0]


@pytest.mark.parametrize(("name", "kwargs", "layer"), [
    ("timm/swin_tiny_patch4_window7_224",  # channels-last (NHWC) feature map
     {"embed_dim": 16, "depths": (1, 1), "num_heads": (1, 1), "window_size": 4},
     "forward_features output"),
    ("timm/vit_tiny_patch16_224", {"embed_dim": 16, "depth": 2, "num_heads": 1, "patch_size": 4},
     "patch tokens entering blocks[1]"),
])
def test_gradcam_timm(name: str, kwargs: dict, layer: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, in_chans=1, image_size=32, **kwargs)
    maps, _, desc = gradcam(model, torch.randn(2, 1, 32, 32))
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all() and desc == layer
    assert max(float(m.std()) for m in maps) > 1e-3
