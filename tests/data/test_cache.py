"""Tests for the decode-once uint8 cache and its train-only statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medclass.data import cache as cache_mod
from medclass.data.cache import build_cache, load_cached_split, resolve_channels
from medclass.data.split import ManifestRow
from medclass.errors import MedclassError

SPLITS = ("train", "val", "test")


def make_raw(root: Path, images: dict[str, list[np.ndarray]]) -> Path:
    """Save arrays as PNGs ``root/<class>/img_XX.png`` (2-D → "L", 3-D → "RGB")."""
    for name, arrays in images.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, arr in enumerate(arrays):
            mode = "L" if arr.ndim == 2 else "RGB"
            Image.fromarray(arr.astype(np.uint8), mode).save(root / name / f"img_{i:02d}.png")
    (root / "classes.json").write_text(json.dumps({"classes": list(images)}))
    return root


def rows_for(images: dict[str, list[np.ndarray]], pattern: tuple[str, ...]) -> list[ManifestRow]:
    """Manifest rows with split ``pattern[i % len(pattern)]`` per class image, sorted."""
    rows = [
        ManifestRow(f"{name}/img_{i:02d}.png", label, name, pattern[i % len(pattern)])
        for label, (name, arrays) in enumerate(images.items())
        for i in range(len(arrays))
    ]
    return sorted(rows, key=lambda r: (SPLITS.index(r.split), r.path))


def const(value: int, shape: tuple[int, ...] = (6, 6)) -> np.ndarray:
    return np.full(shape, value, dtype=np.uint8)


PATTERN = ("train", "train", "val", "test")


def test_cache_shapes_dtypes_and_manifest_order(tmp_path: Path) -> None:
    images = {"b": [const(10 + i) for i in range(8)], "a": [const(100 + i) for i in range(5)]}
    raw = make_raw(tmp_path / "raw", images)
    rows = rows_for(images, PATTERN)
    stats = build_cache(raw, rows, 6, "auto", ["b", "a"], tmp_path / "cache")
    for split in SPLITS:
        x, y = load_cached_split(tmp_path / "cache", split)
        split_rows = [r for r in rows if r.split == split]
        assert isinstance(x, np.memmap) and x.dtype == np.uint8 and y.dtype == np.int64
        assert x.shape == (len(split_rows), 1, 6, 6)
        assert y.tolist() == [r.label for r in split_rows]
        for img, r in zip(x, split_rows, strict=True):
            i = int(Path(r.path).stem.split("_")[1])
            assert np.all(img == images[r.class_name][i])
        assert stats["counts"][split] == {
            c: sum(r.class_name == c for r in split_rows) for c in ("b", "a")
        }
    assert stats["classes"] == ["b", "a"] and stats["image_size"] == 6
    assert stats["channels"] == 1


def test_resolve_channels() -> None:
    assert resolve_channels("auto", ["L", "L"]) == 1
    assert resolve_channels("auto", ["L", "RGB", "L"]) == 3
    assert resolve_channels(3, ["L"]) == 3
    assert resolve_channels(1, ["RGB"]) == 1
    with pytest.raises(MedclassError):
        resolve_channels("two", ["L"])


def test_any_rgb_image_gives_three_channels_and_gray_is_repeated(tmp_path: Path) -> None:
    rgb = np.stack([const(200), const(100), const(50)], axis=-1)
    images = {"x": [const(30), const(40), rgb, const(60)], "y": [const(70) for _ in range(4)]}
    raw = make_raw(tmp_path / "raw", images)
    rows = rows_for(images, PATTERN)
    stats = build_cache(raw, rows, 6, "auto", ["x", "y"], tmp_path / "cache")
    assert stats["channels"] == 3 and len(stats["mean"]) == 3
    x, _ = load_cached_split(tmp_path / "cache", "train")
    train_rows = [r for r in rows if r.split == "train"]
    gray_idx = train_rows.index(ManifestRow("x/img_00.png", 0, "x", "train"))
    assert np.all(x[gray_idx] == 30)
    val, _ = load_cached_split(tmp_path / "cache", "val")
    assert val.shape[1] == 3
    assert [int(val[0, c, 0, 0]) for c in range(3)] == [200, 100, 50]  # x/img_02 is val


def test_forced_channels(tmp_path: Path) -> None:
    gray = [np.arange(36, dtype=np.uint8).reshape(6, 6) * 7 for _ in range(4)]
    raw = make_raw(tmp_path / "raw", {"g": gray})
    rows = rows_for({"g": gray}, PATTERN)
    stats = build_cache(raw, rows, 6, 3, ["g"], tmp_path / "c3")
    x, _ = load_cached_split(tmp_path / "c3", "train")
    assert stats["channels"] == 3 and x.shape[1] == 3
    assert np.array_equal(x[:, 0], x[:, 1]) and np.array_equal(x[:, 0], x[:, 2])
    assert np.array_equal(x[0, 0], gray[0])
    assert stats["mean"][0] == pytest.approx(stats["mean"][2])

    rgb = [np.random.default_rng(i).integers(0, 256, (6, 6, 3), dtype=np.uint8) for i in range(4)]
    raw = make_raw(tmp_path / "raw_rgb", {"c": rgb})
    build_cache(raw, rows_for({"c": rgb}, PATTERN), 6, 1, ["c"], tmp_path / "c1")
    x, _ = load_cached_split(tmp_path / "c1", "train")
    assert x.shape[1] == 1
    expected = np.asarray(Image.fromarray(rgb[0], "RGB").convert("L"))
    assert np.array_equal(x[0, 0], expected)


def test_mean_std_use_train_split_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pattern = ("train", "train", "train", "val", "test")
    # Train images are dark and noisy, val/test bright: including them would move both stats.
    images = {
        name: [
            rng.integers(0, 80, (8, 8, 3), dtype=np.uint8)
            if pattern[i % 5] == "train"
            else const(250, (8, 8, 3))
            for i in range(10)
        ]
        for name in ("p", "q")
    }
    raw = make_raw(tmp_path / "raw", images)
    rows = rows_for(images, pattern)
    stats = build_cache(raw, rows, 8, "auto", ["p", "q"], tmp_path / "cache")
    train = np.stack(
        [images[r.class_name][int(r.path[-6:-4])] for r in rows if r.split == "train"]
    ).astype(np.float64) / 255.0
    everything = np.stack([a for arrs in images.values() for a in arrs]) / 255.0
    np.testing.assert_allclose(stats["mean"], train.mean(axis=(0, 1, 2)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats["std"], train.std(axis=(0, 1, 2)), rtol=0, atol=1e-12)
    assert not np.allclose(stats["mean"], everything.mean(axis=(0, 1, 2)), atol=1e-3)
    assert not np.allclose(stats["std"], everything.std(axis=(0, 1, 2)), atol=1e-3)


def test_mean_std_chunked_accumulation_matches_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(1).integers(0, 256, (37, 3, 5, 5), dtype=np.uint8)
    monkeypatch.setattr(cache_mod, "_STATS_CHUNK_BYTES", 3 * 5 * 5 * 8 * 4)  # 4 images a chunk
    mean, std = cache_mod.channel_mean_std(x)
    ref = x.astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), atol=1e-12)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), atol=1e-12)


def test_resize_to_requested_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    images = {"w": [rng.integers(0, 256, (20, 30), dtype=np.uint8) for _ in range(4)]}
    raw = make_raw(tmp_path / "raw", images)
    rows = rows_for(images, PATTERN)
    stats = build_cache(raw, rows, 8, "auto", ["w"], tmp_path / "cache")
    for split in SPLITS:
        x, _ = load_cached_split(tmp_path / "cache", split, mmap=False)
        assert x.shape[1:] == (1, 8, 8) and not isinstance(x, np.memmap)
    x, _ = load_cached_split(tmp_path / "cache", "train")
    expected = Image.fromarray(images["w"][0], "L").resize((8, 8), Image.Resampling.BILINEAR)
    assert np.array_equal(x[0, 0], np.asarray(expected))
    assert stats["image_size"] == 8


def test_unreadable_png_names_file_and_prepare(tmp_path: Path) -> None:
    images = {"k": [const(5) for _ in range(4)]}
    raw = make_raw(tmp_path / "raw", images)
    (raw / "k" / "img_01.png").write_bytes(b"not a png at all")
    for channels in ("auto", 1):
        with pytest.raises(MedclassError) as err:
            build_cache(raw, rows_for(images, PATTERN), 6, channels, ["k"], tmp_path / "c")
        msg = str(err.value)
        assert "img_01.png" in msg and "prepare" in msg and "\n" not in msg


def test_manifest_not_matching_classes_is_an_error(tmp_path: Path) -> None:
    images = {"k": [const(5) for _ in range(4)]}
    raw = make_raw(tmp_path / "raw", images)
    with pytest.raises(MedclassError, match="classes.json"):
        build_cache(raw, rows_for(images, PATTERN), 6, "auto", ["other"], tmp_path / "c")


def test_load_cached_split_missing_says_run_split(tmp_path: Path) -> None:
    with pytest.raises(MedclassError, match="dvc repro split"):
        load_cached_split(tmp_path / "nothing", "train")
