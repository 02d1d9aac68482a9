"""GhostNetV2 family: ghost modules, DFC attention, conv head."""

import pytest
import torch
from torch import nn

from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS
from medclass.models.ghostnet import DFCAttention, GhostBottleneck, GhostModule, GhostNetV2

NAME = "ghostnet"


def _tiny(in_chans: int = 3, **kw) -> nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY_KWARGS[NAME], **kw})


def test_ghost_module_channels_and_cheap_half():
    mod = GhostModule(8, 13).eval()
    x = torch.randn(2, 8, 6, 6)
    out = mod(x)
    assert out.shape == (2, 13, 6, 6)
    primary = mod.primary(x)
    assert torch.equal(out[:, :7], primary)
    assert torch.allclose(out[:, 7:], mod.cheap(primary)[:, :6])


@pytest.mark.parametrize("side", [1, 3, 7, 8])
def test_dfc_gate_shape_and_range(side):
    attn = DFCAttention(8, 12).eval()
    gate = attn(torch.randn(2, 8, side, side), (side, side))
    assert gate.shape == (2, 12, side, side)
    assert ((gate > 0) & (gate < 1)).all()


def test_dfc_gate_is_applied_and_spatially_varying():
    mod = GhostModule(8, 8, dfc=True).eval()
    plain = GhostModule(8, 8)
    plain.load_state_dict({k: v for k, v in mod.state_dict().items() if "attn" not in k})
    x = torch.randn(1, 8, 8, 8)
    gate = mod.attn(x, (8, 8))
    assert torch.allclose(mod(x), plain.eval()(x) * gate, atol=1e-6)
    assert gate.std() > 0


def test_dfc_in_all_bottlenecks_but_first():
    model = _tiny()
    blocks = [m for m in model.modules() if isinstance(m, GhostBottleneck)]
    assert len(blocks) == 16
    assert blocks[0].ghost1.attn is None and all(b.ghost1.attn is not None for b in blocks[1:])
    assert all(b.ghost2.attn is None for b in blocks)
    no_dfc = _tiny(dfc=False)
    assert not any(isinstance(m, DFCAttention) for m in no_dfc.modules())


def test_conv_head_sets_num_features():
    model = GhostNetV2(3, width=0.05, head_chs=24).eval()
    assert model.num_features == 24 and model.fc.in_features == 24
    assert model.forward_features(torch.randn(1, 3, 32, 32)).shape[1] == 48


def test_stride2_bottleneck_odd_side():
    block = GhostBottleneck(8, 16, 12, 5, 2, 0.25).eval()
    assert block(torch.randn(2, 8, 7, 7)).shape == (2, 12, 4, 4)
