"""CoAtNet: adaptive stem, C/T stage layout, relative attention with LayerScale, odd maps."""

import pytest
import torch

from medclass.models.checks import TINY_KWARGS
from medclass.models.coatnet import CoAtNet, RelTransformerStage
from medclass.models.layers import AdaptiveStrideConv, LayerScale

NAME = "coatnet"
TINY = {**TINY_KWARGS[NAME], "drop_path_rate": 0.1}


def test_adaptive_stem_strides_only_large_inputs():
    conv = AdaptiveStrideConv(3, 4, min_side=64).eval()
    assert conv(torch.randn(1, 3, 63, 63)).shape[-2:] == (63, 63)
    assert conv(torch.randn(1, 3, 64, 64)).shape[-2:] == (32, 32)


@pytest.mark.parametrize(("size", "side"), [(16, 1), (18, 2), (28, 2), (32, 2)])
def test_feature_map_sizes_including_odd_maps(size, side):
    model = CoAtNet(2, **TINY).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, size, size))
    assert feats.shape == (2, 32, side, side)


def test_transformer_stage_downsamples_with_layerscale_and_rel_bias():
    stage = RelTransformerStage(8, 16, depth=2, heads=2, rel_size=4, drop_paths=[0.0, 0.0],
                                layer_scale=1e-5, mlp_ratio=4.0).eval()
    assert stage(torch.randn(2, 8, 7, 7)).shape == (2, 16, 4, 4)
    scales = [m for m in stage.modules() if isinstance(m, LayerScale)]
    assert len(scales) == 4 and all(torch.allclose(s.gamma, torch.full_like(s.gamma, 1e-5))
                                    for s in scales)
    assert stage.rel[0](4, 4).shape == (2, 16, 16)


def test_stage_types_are_respected():
    model = CoAtNet(2, dims=(8, 8, 16), depths=(1, 1), stage_types="TT", head_dim=8)
    assert sum(isinstance(m, RelTransformerStage) for m in model.modules()) == 2


def test_bad_layout_is_a_type_error():
    with pytest.raises(TypeError, match="stage_types"):
        CoAtNet(2, dims=(8, 8, 16), depths=(1, 1, 1))


# --- head group, option validation and stochastic depth ---
