"""The ViT body shared by DeiT and the hybrid ViT: prefix tokens, position embedding, blocks."""

from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import TransformerBlock, init_weights
from medclass.models.stages import drop_path_rates


class TokenClassifier(ClassifierModel):
    """Embedding (``make_embed``) → [prefix tokens; patches] + position embedding → blocks → norm.

    The prefix tokens (``prefix``: parameter names) and ``pos_embed`` (learned for a
    ``ref_grid``² grid) are root-level parameters: they join the first layer group and get no
    weight decay. Subclasses resize ``pos_embed`` to the actual grid in their own module (the
    export fixes patch ``resample_abs_pos_embed`` there) and pass it to ``encode``.
    """

    prefix: tuple[str, ...] = ("cls_token",)

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        width: int = 192,
        depth: int = 12,
        heads: int = 3,
        mlp_ratio: float = 4.0,
        ref_grid: int = 14,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.ref_grid = ref_grid
        self.make_embed(in_chans, width)
        for name in self.prefix:
            self.register_parameter(name, nn.Parameter(torch.zeros(1, 1, width)))
        self.pos_embed = nn.Parameter(torch.zeros(1, len(self.prefix) + ref_grid**2, width))
        self.blocks = nn.Sequential(*(
            TransformerBlock(width, heads, mlp_ratio, drop_path=dp)
            for dp in drop_path_rates(depth, drop_path_rate)
        ))
        self.norm = nn.LayerNorm(width)
        self._init_head(width, num_classes, drop_rate)
        self.apply(init_weights)
        for name in ("pos_embed", *self.prefix):
            trunc_normal_(getattr(self, name), std=0.02)

    def make_embed(self, in_chans: int, width: int) -> None:
        """Create the image → (B, width, h, w) patch-map module(s)."""
        raise NotImplementedError

    def no_weight_decay(self) -> set[str]:
        """timm's convention: tokens and position embeddings get no weight decay."""
        return {*self.prefix, "pos_embed"}

    def encode(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """(B, width, h, w) patch map → [prefix; patches] + ``pos`` → blocks → final norm."""
        b = x.shape[0]
        tokens = [getattr(self, name).expand(b, -1, -1) for name in self.prefix]
        x = torch.cat([*tokens, x.flatten(2).transpose(1, 2)], dim=1)
        return self.norm(self.blocks(x + pos))
