"""The documented timm backbones pass the verify checks at 32 px (random init, offline)."""

import pytest

from medclass.models.checks import verify_model
from medclass.models.timm_adapter import takes_img_size

TIMM_NAMES = [
    "timm/convnextv2_tiny", "timm/tf_efficientnetv2_s", "timm/regnety_004", "timm/resnet18",
    "timm/resnet50", "timm/densenet121", "timm/vit_base_patch16_224", "timm/coatnet_0_rw_224",
    "timm/swinv2_tiny_window8_256", "timm/maxvit_tiny_tf_224",
]


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_timm_backbone_verifies_at_32px(name):
    r = verify_model(name, image_size=32, in_chans=1, num_classes=3, batch_size=2,
                     latency_runs=1)
    assert r["ok"], r.get("error")


def test_fixed_size_architectures_are_detected():
    assert takes_img_size("vit_base_patch16_224") and takes_img_size("swinv2_tiny_window8_256")
    assert not takes_img_size("resnet18")
