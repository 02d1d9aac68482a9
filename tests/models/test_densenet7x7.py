"""DenseNet7x7: dense 7x7 layers, no spatial reduction, stem pooling for large inputs."""

import pytest
import torch
from torch import nn

from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS
from medclass.models.densenet7x7 import DenseLayer, DenseNet7x7, FitPool, Transition

NAME = "densenet7x7"


def _tiny(in_chans: int = 3, **kw) -> nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY_KWARGS[NAME], **kw})


def test_dense_layer_appends_growth_channels_at_same_size():
    layer = DenseLayer(10, growth=4, bn_size=2)
    assert layer.block[-1].kernel_size == (7, 7)
    x = torch.randn(2, 10, 9, 9)
    y = layer(x)
    assert y.shape == (2, 14, 9, 9)
    assert torch.equal(y[:, :10], x)  # dense connectivity: the input is passed through as is
    assert Transition(14, 7)(y).shape == (2, 7, 9, 9)


@pytest.mark.parametrize("size", [16, 28, 32, 64])
def test_no_spatial_reduction_up_to_64px(size):
    model = _tiny().eval()
    assert not any(isinstance(m, nn.MaxPool2d | nn.AvgPool2d) for m in model.modules())
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, size, size))
    assert feats.shape[-2:] == (size, size) and feats.shape[1] == model.num_features


def test_large_inputs_are_pooled_in_the_stem_or_kept_on_request():
    assert FitPool(64)(torch.randn(1, 2, 224, 224)).shape[-2:] == (56, 56)
    assert FitPool(32)(torch.randn(1, 2, 33, 20)).shape[-2:] == (17, 10)
    assert FitPool(None)(torch.randn(1, 2, 100, 100)).shape[-2:] == (100, 100)
    model = DenseNet7x7(2, growth_rate=4, block_config=(1,), max_dense_size=None).eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 80, 80)).shape[-2:] == (80, 80)
        assert _tiny().eval().forward_features(
            torch.randn(1, 3, 224, 224)).shape[-2:] == (56, 56)


def test_invalid_configuration_is_clear():
    with pytest.raises(ValueError, match="kernel_size"):
        DenseNet7x7(2, kernel_size=6)
    with pytest.raises(ValueError, match="block_config"):
        DenseNet7x7(2, block_config=())
    with pytest.raises(ValueError, match="max_dense_size"):
        DenseNet7x7(2, max_dense_size=0)
