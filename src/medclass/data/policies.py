"""Per-sample RandAugment / TrivialAugmentWide and CLAHE on uint8 batches.

torchvision's ``RandAugment``/``TrivialAugmentWide`` draw one operation per call, so a batch
would get one operation for every image. Here each sample draws its own operation, magnitude
bin and sign (from the seeded generator of the augmentation), the samples are grouped by what
they drew, and torchvision applies each group's operation to that sub-batch through the same
operation table and apply function its transforms use. CLAHE is OpenCV's (per image, on the
luminance of RGB images).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Uniform = Callable[[float, float], torch.Tensor]

POLICIES = ("none", "randaugment", "trivialaugment")
CLAHE_CLIP = (1.0, 4.0)  # clip limit range drawn per sample


class BatchPolicy:
    """``randaugment`` (``num_ops`` operations at a fixed ``magnitude`` bin of 31) or
    ``trivialaugment`` (one operation at a random bin), drawn per sample."""

    def __init__(self, name: str, num_ops: int = 2, magnitude: int = 9) -> None:
        from torchvision.transforms import v2

        if name == "randaugment":
            self.tv = v2.RandAugment(num_ops=num_ops, magnitude=magnitude)
            self.rounds, self.magnitude = num_ops, magnitude
        elif name == "trivialaugment":
            self.tv = v2.TrivialAugmentWide()
            self.rounds, self.magnitude = 1, None
        else:
            raise ValueError(f"unknown augmentation policy {name!r}; choose from {POLICIES}")
        self.space = list(self.tv._AUGMENTATION_SPACE.items())
        self.bins = self.tv.num_magnitude_bins

    def __call__(self, x: torch.Tensor, uniform: Uniform) -> torch.Tensor:
        """``x``: uint8 (N, C, H, W); every sample gets its own drawn operation(s)."""
        n, _, h, w = x.shape
        for _ in range(self.rounds):
            op = (uniform(0, 1) * len(self.space)).long().clamp(max=len(self.space) - 1)
            if self.magnitude is None:
                mag = (uniform(0, 1) * self.bins).long().clamp(max=self.bins - 1)
            else:
                mag = torch.full((n,), self.magnitude, dtype=torch.long, device=x.device)
            negate = uniform(0, 1) <= 0.5
            keys = torch.stack([op, mag, negate.long()], 1)
            drawn, group = torch.unique(keys, dim=0, return_inverse=True)
            out = x.clone()
            for g, key in enumerate(drawn.tolist()):  # one torchvision call per drawn key
                idx = (group == g).nonzero().squeeze(1)
                out[idx] = self._apply(x[idx], *key, h=h, w=w)
            x = out
        return x

    def _apply(self, x: torch.Tensor, op: int, mag: int, negate: int, *, h: int,
               w: int) -> torch.Tensor:
        name, (magnitudes_fn, signed) = self.space[op]
        magnitudes = magnitudes_fn(self.bins, h, w)
        m = float(magnitudes[mag]) if magnitudes is not None else 0.0
        if signed and negate:
            m = -m
        return self.tv._apply_image_or_video_transform(
            x, name, m, interpolation=self.tv.interpolation, fill=self.tv._fill)


def clahe(x: torch.Tensor, on: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """OpenCV CLAHE on the samples where ``on`` (uint8 N×C×H×W; clip limit per sample).

    Tiles: ``side // 16`` per axis, 1 to 8 (OpenCV turns the clip limit into a pixel count of
    ``limit × tile area / 256``, at least 1, so tiles under 16×16 px would ignore the limit).
    RGB images are equalised on the L channel of CIE Lab.
    """
    import cv2

    idx = on.nonzero().squeeze(1).tolist()
    if not idx:
        return x
    out = x.clone()
    tiles = max(1, min(8, min(x.shape[-2:]) // 16))
    grid = (tiles, tiles)
    for i in idx:
        op = cv2.createCLAHE(clipLimit=float(clip[i]), tileGridSize=grid)
        img = np.ascontiguousarray(x[i].cpu().numpy())
        if img.shape[0] == 1:
            res = op.apply(img[0])[None]
        else:
            lab = cv2.cvtColor(np.ascontiguousarray(img.transpose(1, 2, 0)), cv2.COLOR_RGB2LAB)
            lab[..., 0] = op.apply(np.ascontiguousarray(lab[..., 0]))
            res = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB).transpose(2, 0, 1)
        out[i] = torch.from_numpy(np.ascontiguousarray(res)).to(x.device)
    return out
