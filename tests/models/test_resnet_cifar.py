"""ResNet-18/50 with a CIFAR-style stem: full resolution into the first stage."""

import pytest
import torch
from torch import nn

from medclass.models import create_model, layer_groups
from medclass.models.resnet_cifar import CifarResNet


@pytest.mark.parametrize(("name", "chans"), [("resnet18_cifar", 64), ("resnet50_cifar", 256)])
def test_stem_keeps_resolution_and_ends_at_stride_8(name, chans):
    model = create_model(name, num_classes=3, in_chans=1, width=8).eval()
    assert model.conv1.stride == (1, 1) and model.conv1.kernel_size == (3, 3)
    assert isinstance(model.maxpool, nn.Identity)
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 1, 28, 28))
    assert feats.shape == (2, chans, 4, 4) and model.num_features == chans
    assert [i["reduction"] for i in model.feature_info] == [1, 1, 2, 4, 8]


def test_default_widths_match_resnet18_and_groups_follow_stages():
    model = create_model("resnet18_cifar", num_classes=2, in_chans=3)
    n_params = sum(p.numel() for p in model.parameters())
    assert 11.1e6 < n_params < 11.2e6  # ResNet-18 minus the 7x7 stem plus a 3x3 one
    assert [len(m) for m in (model.layer1, model.layer2, model.layer3, model.layer4)] == [2] * 4
    assert len(layer_groups(model)) == 9  # stem + 8 blocks (timm's fine grouping)


def test_invalid_depth_and_width():
    with pytest.raises(ValueError, match="depth"):
        CifarResNet(2, depth=101)
    with pytest.raises(ValueError, match="width"):
        CifarResNet(2, width=0)
