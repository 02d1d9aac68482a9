"""ResNet-18/50 with a CIFAR-style stem, for 28-64 px images (the MedMNIST "ResNet (28)" setup).

timm's ``ResNet`` with its 7x7 stride-2 stem and max pool replaced by one 3x3 stride-1 conv, so
a 28 px image keeps full resolution in the first stage and ends on a 4x4 map (stride 8 overall)
instead of 1x1. This is the baseline of the MedMNIST v2 benchmark (Yang et al., 2023) and of
the train-throughput benchmark. ``width`` scales the four stage widths (64-128-256-512 default);
the stem stays 64 wide, as in timm's plain stem.
"""

from __future__ import annotations

from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from medclass.models.registry import register_model

_ARCHS: dict[int, tuple[type[nn.Module], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


@register_model(
    "resnet18_cifar",
    'ResNet-18 (basic blocks 2-2-2-2), CIFAR stem: MedMNIST\'s "ResNet-18 (28)".',
    defaults={"depth": 18}, family="resnet", min_size=16, default_size=32, lr_mult=1.0,
    scheduler="onecycle",
)
@register_model(
    "resnet50_cifar",
    'ResNet-50 (bottlenecks 3-4-6-3), CIFAR stem: MedMNIST\'s "ResNet-50 (28)".',
    defaults={"depth": 50}, family="resnet", min_size=16, default_size=32, lr_mult=1.0,
    scheduler="onecycle",
)
class CifarResNet(ResNet):
    """timm ResNet with a 3x3 stride-1 stem and no stem max pool."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        depth: int = 18,
        width: int = 64,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = True,
    ) -> None:
        if depth not in _ARCHS:
            raise ValueError(f"depth must be one of {sorted(_ARCHS)}, got {depth}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        block, layers = _ARCHS[depth]
        super().__init__(
            block, layers, num_classes=num_classes, in_chans=in_chans,
            channels=tuple(width * 2**i for i in range(4)), drop_rate=drop_rate,
            drop_path_rate=drop_path_rate, zero_init_last=zero_init_last,
        )
        stem = self.bn1.num_features  # timm's plain stem is 64 wide whatever the stage widths
        self.conv1 = nn.Conv2d(in_chans, stem, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()
        for info in self.feature_info:  # the stem no longer downsamples (x4 less everywhere)
            info["reduction"] = max(1, info["reduction"] // 4)
