"""Batched, per-sample augmentation on tensors from the decode-once cache.

torchvision's v2 transforms draw one set of parameters per call, so applied to a batch they
would move every image the same way; here every parameter is drawn per sample from a seeded
generator and applied to the whole batch at once (one ``affine_grid``/``grid_sample``).
Under DDP the draws are made for the whole global batch and each rank keeps its own samples
(items ``rank::world``), so a sharded run augments exactly like a single process.

Presets (``train.augment``) set every knob; ``train.aug`` overrides single knobs:

=========  ======  =====  =====  ==========  ========  =====  =====  ====  =====
preset     rotate  scale  shift  brightness  contrast  hflip  vflip  blur  erase
=========  ======  =====  =====  ==========  ========  =====  =====  ====  =====
none       0       0      0      0           0         0      0      0     0
light      10      0.10   0.06   0.10        0.10      0      0      0     0
medical    15      0.15   0.08   0.15        0.15      0.5    0      0     0
strong     25      0.25   0.12   0.25        0.25      0.5    0      0.2   0.25
=========  ======  =====  =====  ==========  ========  =====  =====  ====  =====

Off in every preset, set through ``train.aug``: ``clahe`` (probability of OpenCV CLAHE, clip
limit 1–4) and ``policy`` (``randaugment``/``trivialaugment``: torchvision's operation tables
drawn per sample, see ``policies``), applied first, on the uint8 values; ``saturation`` and
``hue`` (colour jitter of RGB images, one 3×3 colour matrix per sample in YIQ space: chroma
scaled by the saturation factor and rotated by the hue angle); ``multiscale`` (a list of
sizes: each training batch is resized to one of them, drawn per batch; evaluation and export
stay at ``data.image_size``).

``rotate`` is ± degrees, ``scale``/``shift``/``brightness``/``contrast`` ± fractions (shift of
the image side); flips, ``blur`` (Gaussian, sigma 0.1–1.2 px) and ``erase`` (one random
rectangle of 2–20 % of the image filled with uniform noise) are probabilities. No preset
flips vertically: chest films and most scans have a fixed up/down.

Test-time augmentation (``evaluate.tta``): ``flip`` averages the logits of the image and its
mirror; ``flip_rot`` adds the image and its mirror rotated by ±8° (inside every preset's
training range except ``none``). Train with ``hflip`` before using either.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F

from medclass.data.policies import CLAHE_CLIP, BatchPolicy, clahe


@dataclass(frozen=True)
class AugmentSpec:
    """Ranges and probabilities of each augmentation (0 = off)."""

    rotate: float = 0.0
    scale: float = 0.0
    shift: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    hflip: float = 0.0
    vflip: float = 0.0
    blur: float = 0.0
    erase: float = 0.0
    clahe: float = 0.0  # probability of OpenCV CLAHE (clip limit 1-4 drawn per sample)
    policy: str = "none"  # none | randaugment | trivialaugment (torchvision's, per sample)
    policy_ops: int = 2  # randaugment: operations per image
    policy_magnitude: int = 9  # randaugment: magnitude bin of 31
    saturation: float = 0.0  # ± fraction of the chroma (RGB only)
    hue: float = 0.0  # ± fraction of a full turn of the hue (RGB only)
    multiscale: tuple[int, ...] = ()  # training sizes in px, one drawn per batch

    @property
    def colour(self) -> bool:
        return bool(self.saturation or self.hue)

    @property
    def affine(self) -> bool:
        return bool(self.rotate or self.scale or self.shift)

    @property
    def active(self) -> bool:
        knobs = [getattr(self, f.name) for f in fields(self) if f.name not in _POLICY_KNOBS]
        return any(knobs) or self.policy != "none"

    def describe(self) -> str:
        """The active knobs, e.g. ``rotate 10, hflip 0.5, randaugment (2 ops, magnitude 9)``."""
        parts = [f"{f.name} {getattr(self, f.name):g}" for f in fields(self)
                 if f.name not in _NON_FLOAT and getattr(self, f.name)]
        if self.policy == "randaugment":
            parts.append(f"randaugment ({self.policy_ops} ops, magnitude {self.policy_magnitude})")
        elif self.policy != "none":
            parts.append(self.policy)
        if self.multiscale:
            parts.append("multiscale " + "/".join(map(str, self.multiscale)))
        return ", ".join(parts) or "off"


_POLICY_KNOBS = ("policy", "policy_ops", "policy_magnitude")
_NON_FLOAT = (*_POLICY_KNOBS, "multiscale")


PRESETS: dict[str, AugmentSpec] = {
    "none": AugmentSpec(),
    "light": AugmentSpec(rotate=10, scale=0.1, shift=0.06, brightness=0.1, contrast=0.1),
    "medical": AugmentSpec(rotate=15, scale=0.15, shift=0.08, brightness=0.15, contrast=0.15,
                           hflip=0.5),
    "strong": AugmentSpec(rotate=25, scale=0.25, shift=0.12, brightness=0.25, contrast=0.25,
                          hflip=0.5, blur=0.2, erase=0.25),
}


def resolve_spec(preset: str, overrides: dict[str, Any] | None = None) -> AugmentSpec:
    """The preset's spec with the non-None ``overrides`` (``train.aug``) applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; choose from {sorted(PRESETS)}")
    def coerce(k: str, v: Any) -> Any:
        return tuple(int(s) for s in v) if k == "multiscale" else v if k in _POLICY_KNOBS \
            else float(v)

    changes = {k: coerce(k, v) for k, v in (overrides or {}).items() if v is not None}
    return replace(PRESETS[preset], **changes)


def check_channels(spec: AugmentSpec, channels: int) -> None:
    """Colour jitter needs RGB: a one-line error for 1-channel data."""
    if spec.colour and channels != 3:
        raise ValueError(f"train.aug.saturation/hue need RGB images (the data has {channels} "
                         "channel); set them to null/0 or data.channels: 3")


class Augmenter:
    """Applies an ``AugmentSpec`` to a float batch in [0, 1] (N, C, H, W)."""

    def __init__(self, spec: AugmentSpec) -> None:
        self.spec = spec
        self.policy = (BatchPolicy(spec.policy, spec.policy_ops, spec.policy_magnitude)
                       if spec.policy != "none" else None)

    def __call__(
        self, x: torch.Tensor, g: torch.Generator | None, shard: tuple[int, int] = (0, 1)
    ) -> torch.Tensor:
        s, n = self.spec, x.shape[0]
        rank, world = shard

        def uniform(lo: float, hi: float) -> torch.Tensor:
            # draw for the whole global batch, keep this shard's samples (items rank::world)
            u = torch.rand(n * world, generator=g)[rank::world]
            return u.to(x.device) * (hi - lo) + lo

        if s.clahe or self.policy is not None:  # uint8 operations first (x is k/255 here)
            u8 = (x * 255).round_().to(torch.uint8)
            if s.clahe:
                u8 = clahe(u8, uniform(0, 1) < s.clahe, uniform(*CLAHE_CLIP))
            if self.policy is not None:
                u8 = self.policy(u8, uniform)
            x = u8.float().div_(255.0)
        if s.affine or s.brightness or s.contrast:  # one draw order for every spec
            angle = uniform(-s.rotate, s.rotate) * (math.pi / 180.0)
            scale = uniform(1.0 - s.scale, 1.0 + s.scale)
            # affine_grid units span 2 per side: a shift of f of the side is 2f units
            tx, ty = uniform(-2 * s.shift, 2 * s.shift), uniform(-2 * s.shift, 2 * s.shift)
            if s.affine:
                x = _affine(x, angle, scale, tx, ty)
            bright = uniform(-s.brightness, s.brightness).view(n, 1, 1, 1)
            contrast = uniform(1.0 - s.contrast, 1.0 + s.contrast).view(n, 1, 1, 1)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - mean) * contrast + mean + bright).clamp_(0.0, 1.0)
        if s.colour:  # after the draws above, so specs without colour keep their sequence
            x = _colour(x, uniform(1.0 - s.saturation, 1.0 + s.saturation),
                        uniform(-s.hue, s.hue) * (2 * math.pi))
        if s.hflip:
            x = torch.where((uniform(0, 1) < s.hflip).view(n, 1, 1, 1), x.flip(3), x)
        if s.vflip:
            x = torch.where((uniform(0, 1) < s.vflip).view(n, 1, 1, 1), x.flip(2), x)
        if s.blur:
            x = _blur(x, uniform(0, 1) < s.blur, uniform(*BLUR_SIGMA))
        if s.erase:
            x = _erase(x, s.erase, uniform, g, shard)
        if s.multiscale:  # one size per batch: every DDP rank draws the same one
            size = s.multiscale[int(torch.randint(len(s.multiscale), (1,), generator=g))]
            if size != x.shape[-1] or size != x.shape[-2]:
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                  align_corners=False)
        return x


# RGB -> YIQ (NTSC); I and Q carry the chroma, so saturation scales them and hue rotates them
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _colour(x: torch.Tensor, saturation: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Per-sample saturation factor and hue rotation (radians) of an RGB batch in [0, 1]."""
    check_channels(AugmentSpec(saturation=1.0), x.shape[1])
    n = x.shape[0]
    yiq = _YIQ.to(x.device, x.dtype)
    chroma = torch.zeros(n, 3, 3, device=x.device, dtype=x.dtype)
    chroma[:, 0, 0] = 1.0
    cos, sin = torch.cos(angle) * saturation, torch.sin(angle) * saturation
    chroma[:, 1, 1], chroma[:, 1, 2], chroma[:, 2, 1], chroma[:, 2, 2] = cos, -sin, sin, cos
    m = torch.linalg.inv(yiq) @ chroma @ yiq  # (n, 3, 3)
    return torch.einsum("nij,njhw->nihw", m, x).clamp_(0.0, 1.0)


def _affine(x: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor, tx: torch.Tensor,
            ty: torch.Tensor) -> torch.Tensor:
    """Rotate/scale/shift each sample (bilinear, zero padding)."""
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


BLUR_SIGMA = (0.1, 1.2)  # px


def _blur(x: torch.Tensor, on: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma, for the samples where ``on``."""
    n, c, h, w = x.shape
    radius = math.ceil(3 * BLUR_SIGMA[1])
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t.view(1, -1) / sigma.view(-1, 1)) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n*c, 2r+1)
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, -1, 1), groups=n * c).view(n, c, h, w)
    return torch.where(on.view(n, 1, 1, 1), y, x)


def _sqrt(v: torch.Tensor) -> torch.Tensor:
    """``sqrt`` of positive values as ``v * rsqrt(v)``: torch.sqrt on the CPU goes through
    MKL's vector math, whose code path (and last bit) follows the CPU vendor; rsqrt and the
    product are plain vector instructions (``repro.mode: exact``; benchmarks/repro_vendors.py)."""
    return v * torch.rsqrt(v)


def _erase(x: torch.Tensor, p: float, uniform, g: torch.Generator | None,
           shard: tuple[int, int]) -> torch.Tensor:
    """Random erasing: with probability ``p`` one rectangle (2–20 % of the area, aspect
    1/3–3) per sample is filled with uniform noise."""
    n, c, h, w = x.shape
    on = uniform(0, 1) < p
    area = uniform(0.02, 0.2)
    aspect = torch.exp(uniform(math.log(1 / 3), math.log(3.0)))
    eh, ew = _sqrt(area * aspect).clamp(max=1.0), _sqrt(area / aspect).clamp(max=1.0)
    cy, cx = uniform(0, 1) * (1 - eh), uniform(0, 1) * (1 - ew)
    ys = (torch.arange(h, device=x.device) + 0.5) / h
    xs = (torch.arange(w, device=x.device) + 0.5) / w
    inside_y = (ys.view(1, h) >= cy.view(n, 1)) & (ys.view(1, h) < (cy + eh).view(n, 1))
    inside_x = (xs.view(1, w) >= cx.view(n, 1)) & (xs.view(1, w) < (cx + ew).view(n, 1))
    mask = (inside_y.view(n, 1, h, 1) & inside_x.view(n, 1, 1, w)) & on.view(n, 1, 1, 1)
    rank, world = shard
    noise = torch.rand((n * world, c, h, w), generator=g)[rank::world].to(x.device)
    return torch.where(mask, noise, x)


TTA_ROTATION = 8.0  # degrees of the flip_rot views


def _rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    n = x.shape[0]
    angle = torch.full((n,), math.radians(degrees), device=x.device)
    zero, one = torch.zeros(n, device=x.device), torch.ones(n, device=x.device)
    return _affine(x, angle, one, zero, zero)


def tta_views(name: str) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """The deterministic views of ``evaluate.tta`` (functions of a [0, 1] batch)."""
    def hflip(x: torch.Tensor) -> torch.Tensor:
        return x.flip(3)

    views: dict[str, list[Callable[[torch.Tensor], torch.Tensor]]] = {
        "none": [lambda x: x],
        "flip": [lambda x: x, hflip],
        "flip_rot": [lambda x: x, hflip]
        + [(lambda x, d=d, f=f: _rotate(f(x), d)) for f in (lambda x: x, hflip)
           for d in (TTA_ROTATION, -TTA_ROTATION)],
    }
    if name not in views:
        raise ValueError(f"unknown TTA {name!r}; choose from {sorted(views)}")
    return views[name]
