"""Dynamic convolution (Chen et al., 2020) in a MobileNetV2-style backbone (DY-MobileNetV2).

``DynamicConv2d`` holds a bank of K kernels; a routing controller (global average pool → MLP →
softmax(logits / temperature)) gives per-sample weights π(x) ∈ Δ^K, and the sample is convolved
with Σ_k π_k(x)·W_k. All samples run in one grouped conv: the batch is folded into channels
(1, B·C, H, W) with the B mixed kernels stacked as B·groups groups. A high temperature early in
training (paper: 30, annealed to 1) keeps the routing near-uniform so every kernel learns;
``model.set_temperature(t)`` sets it on every layer (the default is 1.0, no annealing needed).

Every conv except the stem is dynamic: inverted residual blocks (dynamic 1×1 expand → dynamic
depthwise 3×3 → dynamic 1×1 project, BN after each, residual when shapes allow) and the final
1×1 conv to ``head_width`` channels.

Size rule: any side ≥ 16 px. Inputs whose shorter side is < 64 px skip the stem's stride (total
stride 16 instead of 32, ``layers.AdaptiveStrideConv``), so 28-px images end in a 2×2 map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import AdaptiveStrideConv, init_weights, make_drop_path
from medclass.models.registry import register_model
from medclass.models.stages import build_stages

# MobileNetV2 stages: (expansion, channels, repeats, stride)
MBV2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10 %."""
    out = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * v else out


class Routing(nn.Module):
    """Per-sample kernel attention: GAP → Linear → ReLU → Linear → softmax(· / temperature)."""

    def __init__(self, cin: int, num_kernels: int, temperature: float, reduction: int = 4):
        super().__init__()
        hidden = max(4, cin // reduction)
        self.fc1 = nn.Linear(cin, hidden)
        self.fc2 = nn.Linear(hidden, num_kernels)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3)))))
        return torch.softmax(logits.float() / self.temperature, dim=-1).to(x.dtype)


class DynamicConv2d(nn.Module):
    """Conv whose kernel is a per-sample softmax mixture of ``num_kernels`` learnt kernels."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
        num_kernels: int = 4, temperature: float = 1.0, bias: bool = False,
    ) -> None:
        super().__init__()
        if cin % groups or cout % groups:
            raise ValueError(f"channels {cin}->{cout} not divisible by groups {groups}")
        self.cin, self.cout, self.kernel = cin, cout, kernel
        self.stride, self.padding, self.groups = stride, kernel // 2, groups
        self.route = Routing(cin, num_kernels, temperature)
        self.weight = nn.Parameter(torch.empty(num_kernels, cout, cin // groups, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(num_kernels, cout)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan-out) init of each kernel, scaled by sqrt(K).

        The routing averages K independent kernels (uniform at init), which divides the mixed
        kernel's std by sqrt(K); without the compensation the signal shrinks by that factor in
        every dynamic layer and eval-mode outputs at init collapse to ~0 for any input.
        """
        fan_out = self.cout // self.groups * self.kernel**2
        k = self.weight.shape[0]
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 * k / fan_out))

    def mixed_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-sample kernels (B, cout, cin/groups, k, k) and biases (B, cout) or None."""
        attn = self.route(x)  # (B, K)
        w = (attn @ self.weight.flatten(1)).view(-1, *self.weight.shape[1:])
        return w, (attn @ self.bias if self.bias is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        weight, bias = self.mixed_weights(x)
        out = F.conv2d(x.reshape(1, b * self.cin, h, w), weight.flatten(0, 1),
                       None if bias is None else bias.flatten(), self.stride, self.padding,
                       groups=self.groups * b)
        return out.view(b, self.cout, *out.shape[-2:])


class DyConvBNAct(nn.Sequential):
    """DynamicConv2d → BatchNorm → ReLU6 (``act=False``: no activation)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True, **dy) -> None:
        layers: list[nn.Module] = [DynamicConv2d(cin, cout, kernel, stride, groups, **dy),
                                   nn.BatchNorm2d(cout)]
        super().__init__(*layers, *([nn.ReLU6(inplace=True)] if act else []))


class DyInvertedResidual(nn.Module):
    """MobileNetV2 block with dynamic convs: 1×1 expand → depthwise 3×3 → 1×1 project."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, drop_path: float,
                 **dy) -> None:
        super().__init__()
        mid = cin * expand
        layers = [DyConvBNAct(cin, mid, 1, **dy)] if expand != 1 else []
        layers += [DyConvBNAct(mid, mid, 3, stride, groups=mid, **dy),
                   DyConvBNAct(mid, cout, 1, act=False, **dy)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout
        self.drop_path = make_drop_path(drop_path if self.use_res else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + self.drop_path(out) if self.use_res else out


@register_model(
    "dynamic_conv",
    """Default: DY-MobileNetV2 ×0.5 with K = 4 kernels per conv, head width 1280.

    Options: ``width`` (multiplier), ``depths`` (7 block counts), ``head_width``,
    ``num_kernels``, ``temperature``, ``drop_path_rate``.
    """,
    family="dynamic_conv", min_size=16, default_size=224, lr_mult=1.0, scheduler="onecycle",
)
class DynamicConvNet(ClassifierModel):
    """DY-MobileNetV2: static stem → dynamic inverted residual stages → dynamic 1×1 → head."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        width: float = 0.5,
        depths: Sequence[int] | None = None,
        head_width: int = 1280,
        num_kernels: int = 4,
        temperature: float = 1.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        depths = tuple(depths) if depths is not None else tuple(s[2] for s in MBV2_STAGES)
        if len(depths) != len(MBV2_STAGES) or min(depths) < 1:
            raise ValueError(f"dynamic_conv: depths needs {len(MBV2_STAGES)} positive ints")
        if num_kernels < 1 or temperature <= 0:
            raise ValueError("dynamic_conv: num_kernels must be ≥ 1 and temperature > 0")
        dy = {"num_kernels": num_kernels, "temperature": temperature}
        stem = make_divisible(32 * width)
        blocks, cin = build_stages(
            [make_divisible(s[1] * width) for s in MBV2_STAGES], depths,
            lambda b: DyInvertedResidual(b.cin, b.cout, b.stride, MBV2_STAGES[b.stage][0],
                                         b.drop_path, **dy),
            strides=[s[3] for s in MBV2_STAGES], cin=stem, drop_path_rate=drop_path_rate,
        )
        self.features = nn.Sequential(AdaptiveStrideConv(in_chans, stem, act=nn.ReLU6), *blocks,
                                      DyConvBNAct(cin, head_width, 1, **dy))
        self._init_head(head_width, num_classes, drop_rate)
        self.apply(init_weights)

    def set_temperature(self, temperature: float) -> None:
        """Set the routing softmax temperature of every dynamic conv (e.g. anneal 30 → 1)."""
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        for m in self.modules():
            if isinstance(m, Routing):
                m.temperature = temperature
