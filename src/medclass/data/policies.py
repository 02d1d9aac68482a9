"""Per-sample RandAugment / TrivialAugmentWide and CLAHE on uint8 batches.

torchvision's ``RandAugment``/``TrivialAugmentWide`` draw one operation per call from torch's
global RNG, so a batch would get one operation for every image and the draws would follow
neither our seeded generator nor the DDP shard. Their operation tables (names, magnitude
ranges, signs) are not public API, so ``OPS`` below writes them down: the same 14 operations
and ranges as the RandAugment and TrivialAugment papers and torchvision 0.29. Each sample
draws its own operation, magnitude bin and sign (from the seeded generator of the
augmentation), the samples are grouped by what they drew, and each group's operation is
applied to that sub-batch with torchvision's public ``transforms.v2.functional`` ops. CLAHE is
OpenCV's (per image, on the luminance of RGB images).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

Uniform = Callable[[float, float], torch.Tensor]

POLICIES = ("none", "randaugment", "trivialaugment")
CLAHE_CLIP = (1.0, 4.0)  # clip limit range drawn per sample
NUM_BINS = 31  # magnitude bins of both policies


def _posterize_bits(max_drop: int) -> Callable[[int, int, int], torch.Tensor]:
    """Bits kept per bin: 8 at bin 0 down to ``8 - max_drop`` at the last bin."""
    return lambda bins, h, w: (8 - torch.arange(bins) / ((bins - 1) / max_drop)).round().int()


def _ramp(top: float) -> Callable[[int, int, int], torch.Tensor]:
    """``bins`` magnitudes evenly from 0 to ``top``."""
    return lambda bins, h, w: torch.linspace(0.0, top, bins)


def _NONE(bins: int, h: int, w: int) -> None:
    """No magnitude (the operation has none)."""


# name -> (magnitudes for (bins, height, width), or None; signed), per policy, in draw order
Table = dict[str, tuple[Callable[[int, int, int], torch.Tensor | None], bool]]
OPS: dict[str, Table] = {
    "randaugment": {  # Cubuk et al. 2020, ranges as torchvision's RandAugment
        "Identity": (_NONE, False),
        "ShearX": (_ramp(0.3), True),
        "ShearY": (_ramp(0.3), True),
        "TranslateX": (lambda bins, h, w: torch.linspace(0.0, 150.0 / 331.0 * w, bins), True),
        "TranslateY": (lambda bins, h, w: torch.linspace(0.0, 150.0 / 331.0 * h, bins), True),
        "Rotate": (_ramp(30.0), True),
        "Brightness": (_ramp(0.9), True),
        "Color": (_ramp(0.9), True),
        "Contrast": (_ramp(0.9), True),
        "Sharpness": (_ramp(0.9), True),
        "Posterize": (_posterize_bits(4), False),
        "Solarize": (lambda bins, h, w: torch.linspace(1.0, 0.0, bins), False),
        "AutoContrast": (_NONE, False),
        "Equalize": (_NONE, False),
    },
    "trivialaugment": {  # Müller & Hutter 2021, "wide" ranges as torchvision's
        "Identity": (_NONE, False),
        "ShearX": (_ramp(0.99), True),
        "ShearY": (_ramp(0.99), True),
        "TranslateX": (_ramp(32.0), True),
        "TranslateY": (_ramp(32.0), True),
        "Rotate": (_ramp(135.0), True),
        "Brightness": (_ramp(0.99), True),
        "Color": (_ramp(0.99), True),
        "Contrast": (_ramp(0.99), True),
        "Sharpness": (_ramp(0.99), True),
        "Posterize": (_posterize_bits(6), False),
        "Solarize": (lambda bins, h, w: torch.linspace(1.0, 0.0, bins), False),
        "AutoContrast": (_NONE, False),
        "Equalize": (_NONE, False),
    },
}


def apply_op(x: torch.Tensor, name: str, m: float) -> torch.Tensor:
    """Operation ``name`` at signed magnitude ``m`` on a batch (uint8, or float in [0, 1]),
    through torchvision's public functional ops (nearest interpolation, zero fill)."""
    nearest = InterpolationMode.NEAREST
    if name == "Identity":
        return x
    if name in ("ShearX", "ShearY"):  # shear angle arctan(m), about the top-left corner
        deg = math.degrees(math.atan(m))
        shear = [deg, 0.0] if name == "ShearX" else [0.0, deg]
        return TF.affine(x, angle=0.0, translate=[0, 0], scale=1.0, shear=shear,
                         interpolation=nearest, fill=None, center=[0, 0])
    if name in ("TranslateX", "TranslateY"):  # whole pixels
        shift = [int(m), 0] if name == "TranslateX" else [0, int(m)]
        return TF.affine(x, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0],
                         interpolation=nearest, fill=None)
    if name == "Rotate":
        return TF.rotate(x, angle=m, interpolation=nearest, fill=None)
    factor = 1.0 + m
    adjust = {"Brightness": TF.adjust_brightness, "Color": TF.adjust_saturation,
              "Contrast": TF.adjust_contrast, "Sharpness": TF.adjust_sharpness}
    if name in adjust:
        return adjust[name](x, factor)
    if name == "Posterize":
        return TF.posterize(x, bits=int(m))
    if name == "Solarize":
        top = 255.0 if x.dtype == torch.uint8 else 1.0
        return TF.solarize(x, threshold=top * m)
    if name == "AutoContrast":
        return TF.autocontrast(x)
    if name == "Equalize":
        return TF.equalize(x)
    raise ValueError(f"unknown augmentation operation {name!r}")


class BatchPolicy:
    """``randaugment`` (``num_ops`` operations at a fixed ``magnitude`` bin of 31) or
    ``trivialaugment`` (one operation at a random bin), drawn per sample."""

    def __init__(self, name: str, num_ops: int = 2, magnitude: int = 9) -> None:
        if name not in OPS:
            raise ValueError(f"unknown augmentation policy {name!r}; choose from {POLICIES}")
        if name == "randaugment":
            self.rounds, self.magnitude = num_ops, magnitude
        else:
            self.rounds, self.magnitude = 1, None
        self.space = list(OPS[name].items())
        self.bins = NUM_BINS

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
            for g, key in enumerate(drawn.tolist()):  # one functional call per drawn key
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
        return apply_op(x, name, m)


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
