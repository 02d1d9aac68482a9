"""CSPDarknet (Wang et al., 2020; Bochkovskiy et al., 2020): cross-stage-partial Darknet stages.

Each stage downsamples with a 3×3 stride-2 conv, then splits the channels into two halves by
1×1 convs: one half runs through Darknet residual blocks (1×1 → 3×3) and a 1×1 transition, the
other skips them (the cross-stage partial connection); the halves are concatenated and fused
by a final 1×1 transition. Stride-2 convs pad, so odd sides work (28 px → 14 → 7 → 4 → 2 → 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import ConvNormAct
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import init_weights, make_drop_path
from medclass.models.registry import register_model
from medclass.models.stages import drop_path_rates


def _act(name: str) -> type[nn.Module]:
    """``leaky`` → LeakyReLU(0.1) (CSPDarknet53), ``mish`` → Mish (YOLOv4 backbone), looked
    up with timm's ``get_act_layer``; its ``leaky_relu`` has torch's 0.01 slope, so ``leaky``
    passes our 0.1-slope ``_Leaky`` through it."""
    from timm.layers import get_act_layer

    acts: dict[str, str | type[nn.Module]] = {"leaky": _Leaky, "mish": "mish"}
    if name not in acts:
        raise TypeError(f"act must be 'leaky' or 'mish', got {name!r}")
    return get_act_layer(acts[name])


class _Leaky(nn.LeakyReLU):
    """LeakyReLU with Darknet's 0.1 slope, constructible without arguments."""

    def __init__(self) -> None:
        super().__init__(0.1, inplace=True)


class DarkBlock(nn.Module):
    """Darknet residual block: 1×1 (hidden) → 3×3 (back to ``dim``), added to the input."""

    def __init__(self, dim: int, hidden: int, act: type[nn.Module], drop_path: float = 0.0):
        super().__init__()
        self.conv1 = ConvNormAct(dim, hidden, 1, act_layer=act)
        self.conv2 = ConvNormAct(hidden, dim, 3, act_layer=act)
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.conv2(self.conv1(x)))


class CSPStage(nn.Module):
    """Downsample → split (two 1×1) → blocks + 1×1 on one half → concat → 1×1 fuse."""

    def __init__(self, cin: int, cout: int, depth: int, stride: int, act: type[nn.Module],
                 drop_paths: Sequence[float]) -> None:
        super().__init__()
        half = cout // 2
        self.down = ConvNormAct(cin, cout, 3, stride, act_layer=act)
        self.split_skip = ConvNormAct(cout, half, 1, act_layer=act)
        self.split_main = ConvNormAct(cout, half, 1, act_layer=act)
        self.blocks = nn.Sequential(*(DarkBlock(half, half, act, dp) for dp in drop_paths[:depth]))
        self.transition = ConvNormAct(half, half, 1, act_layer=act)
        self.fuse = ConvNormAct(2 * half, cout, 1, act_layer=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        main = self.transition(self.blocks(self.split_main(x)))
        return self.fuse(torch.cat([self.split_skip(x), main], dim=1))


@register_model(
    "cspdarknet",
    "CSPDarknet53 layout (1-2-8-8-4) at half width (stages 32…512, ~7 M params).",
    family="cnn", min_size=16, default_size=224, lr_mult=1.0, scheduler="onecycle",
)
class CSPDarknet(ClassifierModel):
    """3×3 stem conv (stride 1) → five CSP stages, each halving the side."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        width: int = 32,
        depths: Sequence[int] = (1, 2, 8, 8, 4),
        stem_stride: int = 2,
        act: str = "leaky",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if not depths or min(depths) < 1 or width < 2:
            raise TypeError("depths must be non-empty with every depth ≥ 1; width ≥ 2")
        if stem_stride not in (1, 2):
            raise TypeError(f"stem_stride must be 1 or 2, got {stem_stride}")
        act_cls = _act(act)
        dpr = drop_path_rates(sum(depths), drop_path_rate)
        stem_w = max(width // 2, 8)
        layers: list[nn.Module] = [ConvNormAct(in_chans, stem_w, 3, act_layer=act_cls)]
        cin, k = stem_w, 0
        for i, depth in enumerate(depths):
            cout = width * 2**i
            stride = stem_stride if i == 0 else 2
            layers.append(CSPStage(cin, cout, depth, stride, act_cls, dpr[k:k + depth]))
            cin, k = cout, k + depth
        self.features = nn.Sequential(*layers)
        self._init_head(cin, num_classes, drop_rate)
        self.apply(init_weights)
