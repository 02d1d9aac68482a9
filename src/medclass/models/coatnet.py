"""CoAtNet: a conv stem and MBConv stages, then transformer stages with relative attention.

Layout (Dai et al. 2021): S0 stem (two 3×3 convs) → S1, S2 MBConv stages → S3, S4 transformer
stages, each stage halving the resolution (total stride 32). Transformer blocks are pre-norm with
direct residuals, LayerScale and a learned relative-position bias over the whole map
(``swin.RelPosBias``: sized for a 224 px input, cropped for smaller maps, resized for larger).
A stage down-samples with max-pool + 1×1 projection ahead of its first block.

Small inputs: the stem only strides when the input side is at least ``small_input_side``
(default 64), so 28-32 px images keep a 2×2 map in the last stage; odd maps are zero-padded to
even before a strided MBConv (``EvenPad``, reused by MaxViT).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct, LayerNorm2d
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import AdaptiveStrideConv, MBConv, TransformerBlock, init_weights
from medclass.models.registry import register_model
from medclass.models.swin import RelPosBias


class EvenPad(nn.Module):
    """Zero-pad the bottom/right so both sides are even (before a stride-2 MBConv)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))


class RelTransformerStage(nn.Module):
    """Max-pool + 1×1 down-sampling, then pre-norm blocks with relative attention (NCHW)."""

    def __init__(self, cin: int, cout: int, depth: int, heads: int, rel_size: int,
                 drop_paths: Sequence[float], layer_scale: float, mlp_ratio: float) -> None:
        super().__init__()
        self.down = nn.Sequential(nn.MaxPool2d(3, 2, 1), nn.Conv2d(cin, cout, 1))
        self.blocks = nn.ModuleList(
            TransformerBlock(cout, heads, mlp_ratio, drop_path=dp, layer_scale=layer_scale)
            for dp in drop_paths[:depth]
        )
        self.rel = nn.ModuleList(RelPosBias(heads, rel_size) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        for block, rel in zip(self.blocks, self.rel, strict=True):
            t = block(t, rel(h, w))
        return t.transpose(1, 2).reshape(b, c, h, w)


@register_model(
    "coatnet",
    'CoAtNet-"nano": dims 32|48-96|192-384, depths C2-C3-T5-T2 (~6 M params).',
    family="coatnet", min_size=16, default_size=224, lr_mult=0.5, scheduler="cosine",
)
class CoAtNet(ClassifierModel):
    """Stem → MBConv ("C") and transformer ("T") stages → LayerNorm → pooled linear head."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        dims: Sequence[int] = (32, 48, 96, 192, 384),
        depths: Sequence[int] = (2, 3, 5, 2),
        stage_types: str = "CCTT",
        head_dim: int = 32,
        mlp_ratio: float = 4.0,
        layer_scale: float = 1e-5,
        small_input_side: int = 64,
        ref_size: int = 224,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if not (len(dims) == len(depths) + 1 == len(stage_types) + 1) or set(stage_types) - {
            "C", "T"
        }:
            raise TypeError("need len(dims) == len(depths) + 1 == len(stage_types) + 1, types C/T")
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        layers: list[nn.Module] = [
            AdaptiveStrideConv(in_chans, dims[0], small_input_side, act=nn.GELU),
            ConvNormAct(dims[0], dims[0], 3, act_layer=nn.GELU),
        ]
        k = 0
        for i, (kind, depth) in enumerate(zip(stage_types, depths, strict=True)):
            cin, cout = dims[i], dims[i + 1]
            if kind == "C":
                blocks: list[nn.Module] = [EvenPad()]
                for j in range(depth):
                    blocks.append(MBConv(cin if j == 0 else cout, cout, 2 if j == 0 else 1,
                                         drop_path=dpr[k + j], act=nn.GELU))
                layers.append(nn.Sequential(*blocks))
            else:
                rel_size = max(1, ref_size // 2 ** (i + 2))
                layers.append(RelTransformerStage(cin, cout, depth, max(1, cout // head_dim),
                                                  rel_size, dpr[k:], layer_scale, mlp_ratio))
            k += depth
        layers.append(LayerNorm2d(dims[-1]))
        self.features = nn.Sequential(*layers)
        self._init_head(dims[-1], num_classes, drop_rate)
        self.apply(init_weights)
