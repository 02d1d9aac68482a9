"""Tests for medclass.data.synthetic: determinism, counts, speed and class separability."""

from __future__ import annotations

import numpy as np
import pytest

from medclass.config import SyntheticParams
from medclass.data.synthetic import class_counts, generate


def _all(params: SyntheticParams, seed: int) -> list[tuple[str, int, np.ndarray]]:
    return list(generate(params, seed))


def test_shapes_dtype_and_order() -> None:
    params = SyntheticParams(classes=["normal", "nodule", "weird"], images_per_class=4, size=24)
    out = _all(params, 0)
    assert [(n, j) for n, j, _ in out] == [(c, j) for c in params.classes for j in range(4)]
    for _, _, arr in out:
        assert arr.dtype == np.uint8 and arr.shape == (24, 24)
        assert arr.max() > arr.min()  # not a blank frame


def test_same_seed_identical_different_seed_differs() -> None:
    params = SyntheticParams(images_per_class=5, size=32)
    a, b, c = _all(params, 3), _all(params, 3), _all(params, 4)
    assert all(x[2].tobytes() == y[2].tobytes() for x, y in zip(a, b, strict=True))
    assert all(x[2].tobytes() != y[2].tobytes() for x, y in zip(a, c, strict=True))


def test_images_independent_of_count() -> None:
    small = _all(SyntheticParams(images_per_class=3, size=32), 9)
    large = _all(SyntheticParams(images_per_class=6, size=32), 9)
    by_key = {(n, j): arr for n, j, arr in large}
    for n, j, arr in small:
        np.testing.assert_array_equal(arr, by_key[(n, j)])


def test_known_names_case_insensitive() -> None:
    lower = _all(SyntheticParams(classes=["normal", "nodule"], images_per_class=3), 1)
    upper = _all(SyntheticParams(classes=["Normal", "NODULE"], images_per_class=3), 1)
    for x, y in zip(lower, upper, strict=True):
        np.testing.assert_array_equal(x[2], y[2])


@pytest.mark.parametrize("n,imbalance,k", [(100, 4.0, 4), (60, 10.0, 2), (10, 100.0, 3)])
def test_imbalance_counts(n: int, imbalance: float, k: int) -> None:
    params = SyntheticParams(
        classes=[f"c{i}" for i in range(k)], images_per_class=n, imbalance=imbalance, size=16
    )
    counts = class_counts(params)
    expected = [max(3, round(n * imbalance ** (-i / (k - 1)))) for i in range(k)]
    assert counts == expected
    assert counts[0] == n and counts == sorted(counts, reverse=True)
    if n / imbalance >= 3:
        assert counts[0] / counts[-1] == pytest.approx(imbalance, rel=0.05)
    else:
        assert counts[-1] == 3
    yielded = [name for name, _, _ in generate(params, 0)]
    assert [yielded.count(c) for c in params.classes] == counts


def test_balanced_by_default() -> None:
    assert class_counts(SyntheticParams(images_per_class=7)) == [7, 7, 7, 7]


def _features(arr: np.ndarray) -> np.ndarray:
    """Pooled layout + low-frequency spectrum magnitude of a 64x64 image."""
    a = arr.astype(np.float64)
    a = (a - a.mean()) / (a.std() + 1e-6)
    pooled = a.reshape(8, 8, 8, 8).mean(axis=(1, 3)).ravel()
    spectrum = np.log1p(np.abs(np.fft.fft2(a))[:12, :12]).ravel()
    return np.r_[pooled, spectrum]


def _ridge_accuracy(classes: list[str], difficulty: float) -> float:
    """Held-out accuracy of a one-vs-all ridge classifier on simple features."""
    params = SyntheticParams(classes=classes, images_per_class=60, size=64, difficulty=difficulty)
    rows = [(_features(a), classes.index(n), j) for n, j, a in generate(params, 7)]
    x = np.stack([r[0] for r in rows])
    y = np.array([r[1] for r in rows])
    held_out = np.array([r[2] % 3 == 0 for r in rows])
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    x = np.c_[x, np.ones(len(x))]
    targets = np.eye(len(classes))[y]
    tr = ~held_out
    w = np.linalg.solve(x[tr].T @ x[tr] + 100.0 * np.eye(x.shape[1]), x[tr].T @ targets[tr])
    return float((np.argmax(x[held_out] @ w, axis=1) == y[held_out]).mean())


@pytest.mark.parametrize(
    "classes", [["normal", "nodule", "opacity", "effusion"], ["normal", "alpha", "beta", "gamma"]]
)
def test_classes_distinguishable(classes: list[str]) -> None:
    # Chance is 0.25; findings (known and generic textures) must be clearly learnable.
    assert _ridge_accuracy(classes, difficulty=0.0) > 0.45


def test_difficulty_reduces_finding_contrast() -> None:
    def lung_excess(difficulty: float) -> float:
        params = SyntheticParams(
            classes=["normal", "opacity"], images_per_class=40, size=32, difficulty=difficulty
        )
        means: dict[str, list[float]] = {"normal": [], "opacity": []}
        for name, _, arr in generate(params, 5):
            means[name].append(float(arr[6:22, 4:28].mean()))  # band covering both lungs
        return float(np.mean(means["opacity"]) - np.mean(means["normal"]))

    easy, hard = lung_excess(0.0), lung_excess(1.0)
    assert easy > 3.0  # opacity brightens the lungs
    assert easy > hard
