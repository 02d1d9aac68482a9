"""Dynamic convolution: routing, batched grouped-conv mixing, DY-MobileNetV2."""

import pytest
import torch
import torch.nn.functional as F

from medclass.models import create_model
from medclass.models.checks import TINY_KWARGS
from medclass.models.dynamic_conv import DynamicConv2d, DynamicConvNet, Routing

NAME = "dynamic_conv"


def _tiny(in_chans: int = 3, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, num_classes=3, in_chans=in_chans, **{**TINY_KWARGS[NAME], **kw})


def test_routing_is_a_per_sample_distribution_sharpened_by_temperature():
    torch.manual_seed(0)
    route = Routing(8, 4, temperature=1.0)
    torch.nn.init.normal_(route.fc1.weight, std=1.0)
    torch.nn.init.normal_(route.fc2.weight, std=2.0)
    x = torch.randn(2, 8, 1, 1) * 3
    attn = route(x)
    assert attn.shape == (2, 4)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2))
    assert not torch.allclose(attn[0], attn[1])
    route.temperature = 30.0
    assert (route(x) - 0.25).abs().max() < (attn - 0.25).abs().max()


@pytest.mark.parametrize("cin, cout, kernel, stride, groups, bias", [
    (4, 6, 3, 1, 1, True), (4, 4, 3, 2, 4, False), (4, 8, 1, 1, 2, True)])
def test_batched_grouped_conv_equals_per_sample_mixture(cin, cout, kernel, stride, groups, bias):
    torch.manual_seed(0)
    conv = DynamicConv2d(cin, cout, kernel, stride, groups, num_kernels=3, bias=bias)
    torch.nn.init.normal_(conv.route.fc1.weight, std=1.0)
    torch.nn.init.normal_(conv.route.fc2.weight, std=2.0)
    x = torch.randn(3, cin, 9, 9)
    out = conv(x)
    attn = conv.route(x)
    for i in range(3):
        w = torch.einsum("k,koihw->oihw", attn[i], conv.weight)
        b = attn[i] @ conv.bias if bias else None
        ref = F.conv2d(x[i:i + 1], w, b, stride, kernel // 2, groups=groups)
        torch.testing.assert_close(out[i:i + 1], ref, atol=1e-5, rtol=1e-5)


def test_samples_do_not_leak_across_the_batch():
    conv = DynamicConv2d(4, 4, 3, num_kernels=4)
    a, b, c = torch.randn(3, 1, 4, 6, 6)
    torch.testing.assert_close(conv(torch.cat([a, b]))[0], conv(torch.cat([a, c]))[0])


def test_single_kernel_is_a_static_conv():
    conv = DynamicConv2d(4, 6, 3, num_kernels=1)
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight[0], None, 1, 1))


def test_set_temperature_reaches_every_layer():
    model = DynamicConvNet(3, **TINY_KWARGS[NAME])
    model.set_temperature(30.0)
    temps = {m.temperature for m in model.modules() if isinstance(m, Routing)}
    assert temps == {30.0}
    with pytest.raises(ValueError, match="temperature"):
        model.set_temperature(0.0)


@pytest.mark.parametrize("size, side", [(28, 2), (32, 2), (64, 2)])
def test_small_inputs_skip_the_stem_stride(size, side):
    model = _tiny(3).eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, size, size)).shape[-1] == side
