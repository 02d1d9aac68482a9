"""Deterministic procedural generator of grayscale chest-film-like images (numpy only).

Every image is drawn from its own child generator ``default_rng([seed, class_index, index])``,
so an image depends only on the seed, its class position and its index: output is
byte-identical across runs and platforms, and changing ``images_per_class`` or ``imbalance``
only adds/removes images at the end of each class.

Known findings (matched case-insensitively): ``normal`` (none), ``nodule``, ``opacity``,
``effusion``. Any other class name gets a texture patch whose kind, frequency and orientation
are derived from the class index, so arbitrary class lists stay distinguishable.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import numpy as np

from medclass.config import SyntheticParams

_LUNG_CX = 0.36  # lung centres at x = -/+ _LUNG_CX (normalised coordinates, -1..1)
_LUNG_CY = -0.08
_LUNG_RX = 0.25
_LUNG_RY = 0.52
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def class_counts(params: SyntheticParams) -> list[int]:
    """Images per class: ``round(n * imbalance ** (-i / (K - 1)))``, at least 3."""
    k = len(params.classes)
    return [
        max(3, round(params.images_per_class * params.imbalance ** (-i / (k - 1))))
        for i in range(k)
    ]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float,
             soft: float) -> np.ndarray:
    """Soft-edged filled ellipse in [0, 1]."""
    r = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return _sigmoid((1.0 - r) / soft)


@functools.lru_cache(maxsize=32)
def _interp_matrix(size: int, cells: int) -> np.ndarray:
    """(size, cells + 1) matrix that linearly interpolates a coarse axis onto ``size`` pixels."""
    t = np.linspace(0.0, cells, size)
    i0 = np.minimum(t.astype(np.int64), cells - 1)
    f = t - i0
    m = np.zeros((size, cells + 1), dtype=np.float32)
    m[np.arange(size), i0] = 1.0 - f
    m[np.arange(size), i0 + 1] = f
    return m


@functools.lru_cache(maxsize=32)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x) in -1..1, float32, read-only."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-ish low-frequency noise: bilinear upsampling of a coarse random grid."""
    m = _interp_matrix(size, cells)
    return m @ rng.standard_normal((cells + 1, cells + 1), dtype=np.float32) @ m.T


def _side(rng: np.random.Generator) -> float:
    """-1.0 (left of image) or +1.0 (right), equally likely."""
    return -1.0 if rng.random() < 0.5 else 1.0


def _point_in_lung(rng: np.random.Generator, side: float, spread: float) -> tuple[float, float]:
    """A random point inside the lung on ``side`` (-1 left, +1 right of the image)."""
    ang = rng.uniform(0.0, 2.0 * math.pi)
    rad = spread * math.sqrt(rng.uniform())
    x = side * _LUNG_CX + rad * _LUNG_RX * math.cos(ang)
    return x, _LUNG_CY + rad * _LUNG_RY * math.sin(ang)


def _nodule(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, lungs: np.ndarray,
            px: float) -> np.ndarray:
    """One to three small bright round blobs in a lung."""
    out = np.zeros_like(x)
    side = _side(rng)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = _point_in_lung(rng, side, 0.75)
        rad = max(rng.uniform(0.055, 0.1), 1.2 * px)
        d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        out = np.maximum(out, _sigmoid((rad - d) / (0.3 * rad)) * rng.uniform(0.8, 1.2))
    return out * (0.3 + 0.7 * lungs)


def _opacity(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, lungs: np.ndarray,
             size: int) -> np.ndarray:
    """A diffuse patchy cloud inside one lung."""
    side = _side(rng)
    cx, cy = _point_in_lung(rng, side, 0.5)
    sx, sy = rng.uniform(0.15, 0.25), rng.uniform(0.22, 0.4)
    envelope = np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))
    patches = np.clip(0.9 + 0.5 * _smooth_noise(rng, size, int(rng.integers(5, 9))), 0.1, 1.5)
    return envelope * patches * lungs


def _effusion(rng: np.random.Generator, x: np.ndarray, y: np.ndarray,
              soft_lungs: np.ndarray) -> np.ndarray:
    """Fluid at one or both lung bases: brightness rising downwards below a meniscus."""
    out = np.zeros_like(x)
    sides = [-1.0, 1.0] if rng.uniform() < 0.3 else [_side(rng)]
    base = _LUNG_CY + _LUNG_RY
    for side in sides:
        depth = rng.uniform(0.4, 0.75) * _LUNG_RY
        lateral = np.clip((x - side * _LUNG_CX) * side / _LUNG_RX, 0.0, 1.5)
        surface = base - depth - rng.uniform(0.1, 0.25) * lateral**2  # meniscus: higher laterally
        below = np.clip((y - surface) / depth, 0.0, 1.0)
        fluid = _sigmoid((y - surface) / 0.025) * (0.8 + 0.6 * below)
        out = np.maximum(out, fluid * (np.sign(x) == np.sign(side)))
    return out * soft_lungs


def _texture(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, lungs: np.ndarray,
             class_index: int) -> np.ndarray:
    """Class-specific patch for unknown names: grating, checkerboard or rings."""
    kind = class_index % 3
    freq = 1.6 + 0.55 * ((class_index // 3) % 4)  # cycles per unit (>= 4 px at 32 px)
    theta = math.pi * ((class_index * _GOLDEN) % 1.0)
    cx, cy = _point_in_lung(rng, _side(rng), 0.45)
    u = (x - cx) * math.cos(theta) + (y - cy) * math.sin(theta)
    v = -(x - cx) * math.sin(theta) + (y - cy) * math.cos(theta)
    phase = rng.uniform(0.0, 2.0 * math.pi)
    if kind == 0:
        pattern = np.cos(2 * math.pi * freq * u + phase)
    elif kind == 1:
        pattern = np.cos(2 * math.pi * freq * u + phase) * np.cos(2 * math.pi * freq * v + phase)
    else:
        pattern = np.cos(2 * math.pi * freq * np.sqrt(u**2 + v**2) + phase)
    envelope = np.exp(-0.5 * (u**2 + v**2) / rng.uniform(0.2, 0.28) ** 2)
    return (0.6 + 0.8 * pattern) * envelope * lungs


def _finding(name: str, class_index: int, rng: np.random.Generator, x: np.ndarray,
             y: np.ndarray, lungs: np.ndarray, soft_lungs: np.ndarray, size: int) -> np.ndarray:
    """Intensity map (roughly 0..1) of the class-specific finding."""
    key = name.strip().lower()
    if key == "normal":
        return np.zeros_like(x)
    if key == "nodule":
        return _nodule(rng, x, y, lungs, 2.0 / size)
    if key == "opacity":
        return _opacity(rng, x, y, lungs, size)
    if key == "effusion":
        return _effusion(rng, x, y, soft_lungs)
    return _texture(rng, x, y, lungs, class_index)


def render(name: str, class_index: int, size: int, difficulty: float,
           rng: np.random.Generator) -> np.ndarray:
    """Render one ``size`` x ``size`` uint8 film for class ``name`` from ``rng``."""
    yy, xx = _grid(size)
    # Random pose: shift, scale, small rotation (applied to the sampling grid).
    scale = rng.uniform(0.88, 1.12)
    ang = math.radians(rng.uniform(-5.0, 5.0))
    xs, ys = xx - rng.uniform(-0.08, 0.08), yy - rng.uniform(-0.08, 0.08)
    x = (xs * math.cos(ang) + ys * math.sin(ang)) / scale
    y = (-xs * math.sin(ang) + ys * math.cos(ang)) / scale
    soft = 0.04 + 4.0 / size
    body = _ellipse(x, y, 0.0, 0.12, rng.uniform(0.8, 0.9), 1.05, soft)
    heart = _ellipse(x, y, 0.12, 0.33, rng.uniform(0.19, 0.25), 0.18, soft)
    lungs = np.zeros_like(x)
    for side in (-1.0, 1.0):
        rx, ry = _LUNG_RX * rng.uniform(0.92, 1.08), _LUNG_RY * rng.uniform(0.92, 1.08)
        lungs = np.maximum(lungs, _ellipse(x, y, side * _LUNG_CX, _LUNG_CY, rx, ry, soft))
    lungs *= 1.0 - heart
    soft_lungs = np.clip(lungs * 1.3, 0.0, 1.0)
    img = 0.07 + 0.55 * body + 0.1 * np.exp(-((x / 0.11) ** 2)) * body
    img -= rng.uniform(0.3, 0.4) * lungs
    rib_phase = rng.uniform(0.0, 2.0 * math.pi)
    ribs = 0.5 + 0.5 * np.cos(2 * math.pi * 3.2 * (y - 0.35 * np.abs(x)) + rib_phase)
    img += 0.05 * ribs * lungs
    img += 0.035 * _smooth_noise(rng, size, 6) * body  # natural density variation
    contrast = (1.0 - 0.7 * difficulty) * rng.uniform(0.75, 1.25)
    img += 0.35 * contrast * _finding(name, class_index, rng, x, y, lungs, soft_lungs, size)
    # Sensor noise: uniform with standard deviation 0.01 + 0.05 * difficulty (fast to draw).
    sigma = (0.01 + 0.05 * difficulty) * math.sqrt(12.0)
    img += sigma * (rng.random(img.shape, dtype=np.float32) - 0.5)
    # Exposure: gain, offset, gamma.
    img = np.clip(img * rng.uniform(0.85, 1.15) + rng.uniform(-0.05, 0.05), 0.0, 1.0)
    img = np.power(img, np.float32(rng.uniform(0.8, 1.25)))
    return np.rint(img * 255.0).astype(np.uint8)


def generate(params: SyntheticParams, seed: int) -> Iterator[tuple[str, int, np.ndarray]]:
    """Yield ``(class_name, index_within_class, uint8 HxW image)`` class by class, in order."""
    seed = int(seed) % (2**63)
    for ci, (name, count) in enumerate(zip(params.classes, class_counts(params), strict=True)):
        for j in range(count):
            rng = np.random.default_rng([seed, ci, j])
            yield name, j, render(name, ci, params.size, params.difficulty, rng)
