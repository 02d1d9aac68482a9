"""ConvNeXt (Liu et al., 2022): patchify stem, depthwise 7×7 + inverted-MLP blocks, LayerNorm.

Any input side works: the stem zero-pads the image to a multiple of ``patch_size`` and every
2×2 downsampling pads an odd side by one, so 28 px → 7 → 4 → 2 → 1 with the default patch 4
(``patch_size=2`` keeps more resolution for MedMNIST-sized images).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d, LayerScale, Mlp, trunc_normal_
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import make_drop_path
from medclass.models.registry import register_model
from medclass.models.stages import build_stages


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad H and W at the bottom/right up to a multiple of ``multiple``."""
    ph, pw = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


class ConvNeXtBlock(nn.Module):
    """dw k×k → LayerNorm → Linear(r·d) → GELU → Linear(d) → LayerScale, plus a residual."""

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 4.0,
        kernel: int = 7,
        drop_path: float = 0.0,
        ls_init: float = 1e-6,
    ) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls = LayerScale(dim, ls_init) if ls_init > 0 else nn.Identity()
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # NHWC for LayerNorm / Linear
        y = self.ls(self.mlp(self.norm(y))).permute(0, 3, 1, 2)
        return x + self.drop_path(y)


class Stem(nn.Module):
    """Pad to a patch multiple, non-overlapping p×p conv (stride p), LayerNorm2d."""

    def __init__(self, in_chans: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.conv = nn.Conv2d(in_chans, dim, patch_size, patch_size)
        self.norm = LayerNorm2d(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(pad_to_multiple(x, self.patch_size)))


class Downsample(nn.Module):
    """LayerNorm2d, pad odd sides, 2×2 stride-2 conv (between stages)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(cin, eps=1e-6)
        self.conv = nn.Conv2d(cin, cout, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(pad_to_multiple(self.norm(x), 2))


@register_model(
    "convnext",
    "ConvNeXt-Femto widths 48-96-192-384, depths 2-2-6-2 (~5 M params); ``dims``/``depths``.",
    family="cnn", min_size=16, default_size=224, lr_mult=1.0, scheduler="onecycle",
)
class ConvNeXt(ClassifierModel):
    """Stem + four stages of ConvNeXt blocks; pooled features are LayerNorm-ed before the head."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        dims: Sequence[int] = (48, 96, 192, 384),
        depths: Sequence[int] = (2, 2, 6, 2),
        patch_size: int = 4,
        kernel_size: int = 7,
        mlp_ratio: float = 4.0,
        ls_init: float = 1e-6,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if patch_size < 1:
            raise TypeError(f"patch_size must be ≥ 1, got {patch_size}")
        stages, _ = build_stages(
            dims, depths,
            lambda b: ConvNeXtBlock(b.cout, mlp_ratio, kernel_size, b.drop_path, ls_init),
            strides=(1,) * len(dims), drop_path_rate=drop_path_rate, nested=True,
            transition=lambda i, cin, cout: (Downsample(cin, cout), cout) if i else None,
        )
        self.features = nn.Sequential(Stem(in_chans, dims[0], patch_size), *stages)
        self.head_norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self._init_head(dims[-1], num_classes, drop_rate)
        self.apply(_init)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool → LayerNorm → dropout → classifier."""
        x = self.head_drop(self.head_norm(x.mean(dim=(2, 3))))
        return x if pre_logits else self.fc(x)


def _init(module: nn.Module) -> None:
    """Truncated-normal (std 0.02) conv and linear weights, zero biases (as in the paper)."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
