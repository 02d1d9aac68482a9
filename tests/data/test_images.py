"""Tests for medclass.data.images: decoding, conversions and failure modes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medclass.data.images import (
    IMAGE_EXTENSIONS,
    ImageDecodeError,
    decode_image,
    is_hidden,
    load_image,
)
from medclass.errors import MedclassError


def _noise_rgb(size: int = 32, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")


def _assert_decode_fails(path: Path, fragment: str) -> None:
    with pytest.raises(ImageDecodeError) as info:
        load_image(path)
    msg = str(info.value)
    assert fragment in msg
    assert "\n" not in msg


def test_decode_error_is_medclass_error() -> None:
    assert issubclass(ImageDecodeError, MedclassError)


def test_zero_byte_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _assert_decode_fails(path, "empty")


def test_missing_file_fails(tmp_path: Path) -> None:
    _assert_decode_fails(tmp_path / "nope.png", "cannot read")


@pytest.mark.parametrize("fmt,ext", [("JPEG", ".jpg"), ("PNG", ".png")])
def test_truncated_image_fails(tmp_path: Path, fmt: str, ext: str) -> None:
    full = tmp_path / f"full{ext}"
    _noise_rgb(64).save(full, format=fmt)
    data = full.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) // 2])
    load_image(full)  # the intact file decodes
    _assert_decode_fails(cut, "truncated")


def test_non_image_with_image_extension_fails(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("definitely not a JPEG\n")
    _assert_decode_fails(path, "not a recognised image")


@pytest.mark.parametrize("pixels", [1500, 3000])  # warning level (> max) and error level (> 2x)
def test_decompression_bomb_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  pixels: int) -> None:
    path = tmp_path / "bomb.png"
    Image.new("L", (pixels, 1)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    before = list(warnings.filters)
    _assert_decode_fails(path, "decompression bomb")
    assert warnings.filters == before  # "warnings as errors" is scoped to the call


def test_exif_orientation_applied(tmp_path: Path) -> None:
    arr = np.zeros((10, 20), dtype=np.uint8)
    arr[0, 0] = 255
    img = Image.fromarray(arr, "L")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.png"
    img.save(path, exif=exif)
    out = load_image(path)
    assert out.size == (10, 20)
    expected = np.asarray(img.transpose(Image.Transpose.ROTATE_270))
    np.testing.assert_array_equal(np.asarray(out), expected)


def test_rgba_composited_on_black(tmp_path: Path) -> None:
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[..., :3] = (200, 100, 50)
    arr[..., 3] = 128
    arr[0, 0, 3] = 0
    arr[1, 1, 3] = 255
    path = tmp_path / "rgba.png"
    Image.fromarray(arr, "RGBA").save(path)
    img, mode = decode_image(path)
    assert mode == "RGBA" and img.mode == "RGB"
    out = np.asarray(img)
    assert tuple(out[0, 0]) == (0, 0, 0)
    assert tuple(out[1, 1]) == (200, 100, 50)
    assert tuple(out[2, 2]) == (100, 50, 25)


def test_la_composited_to_l(tmp_path: Path) -> None:
    arr = np.stack([np.full((4, 4), 200, np.uint8), np.full((4, 4), 51, np.uint8)], axis=-1)
    path = tmp_path / "la.png"
    Image.fromarray(arr, "LA").save(path)
    img, mode = decode_image(path)
    assert (mode, img.mode) == ("LA", "L")
    assert np.asarray(img).max() == 40  # 200 * 51 / 255


def test_palette_colour_to_rgb_and_gray_to_l(tmp_path: Path) -> None:
    colour = _noise_rgb(16).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    colour.save(tmp_path / "colour.png")
    img, mode = decode_image(tmp_path / "colour.png")
    assert (mode, img.mode) == ("P", "RGB")
    np.testing.assert_array_equal(np.asarray(img), np.asarray(colour.convert("RGB")))

    gray = Image.new("P", (8, 8))
    gray.putpalette([v for i in range(256) for v in (i, i, i)])
    gray.putpixel((1, 1), 77)
    gray.save(tmp_path / "gray.gif")
    img, mode = decode_image(tmp_path / "gray.gif")
    assert (mode, img.mode) == ("P", "L")
    assert np.asarray(img)[1, 1] == 77


def test_palette_with_transparency_composited(tmp_path: Path) -> None:
    img = Image.new("P", (4, 4), 1)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    img.putpixel((0, 0), 0)
    path = tmp_path / "trans.png"
    img.save(path, transparency=1)  # palette index 1 (green) is fully transparent
    out = np.asarray(load_image(path))
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[2, 2]) == (0, 0, 0)


def test_cmyk_to_rgb(tmp_path: Path) -> None:
    src = _noise_rgb(16).convert("CMYK")
    path = tmp_path / "cmyk.tif"
    src.save(path)
    img, mode = decode_image(path)
    assert (mode, img.mode) == ("CMYK", "RGB")
    np.testing.assert_array_equal(np.asarray(img), np.asarray(src.convert("RGB")))


@pytest.mark.parametrize("mode,ext", [("I;16", ".png"), ("I;16B", ".tif")])
def test_16bit_scaled_by_257(tmp_path: Path, mode: str, ext: str) -> None:
    values = np.array([[0, 257, 1000, 65535]], dtype=np.uint16)
    dtype = ">u2" if mode == "I;16B" else "<u2"
    src = Image.frombytes(mode, (4, 1), values.astype(dtype).tobytes())
    path = tmp_path / f"deep{ext}"
    src.save(path)
    img, got_mode = decode_image(path)
    assert got_mode == mode and img.mode == "L"
    assert np.asarray(img).tolist() == [[0, 1, 4, 255]]


def test_int32_clipped_to_16bit_range(tmp_path: Path) -> None:
    src = Image.fromarray(np.array([[-5, 514, 65535, 10**6]], dtype=np.int32))
    path = tmp_path / "int.tif"
    src.save(path)
    img, mode = decode_image(path)
    assert (mode, img.mode) == ("I", "L")
    assert np.asarray(img).tolist() == [[0, 2, 255, 255]]


def test_float_unit_range_and_byte_range(tmp_path: Path) -> None:
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0, np.nan]], dtype=np.float32))
    unit.save(tmp_path / "unit.tif")
    img, mode = decode_image(tmp_path / "unit.tif")
    assert (mode, img.mode) == ("F", "L")
    assert np.asarray(img).tolist() == [[0, 128, 255, 0]]

    wide = Image.fromarray(np.array([[-3.0, 10.0, 254.6, 900.0]], dtype=np.float32))
    wide.save(tmp_path / "wide.tif")
    assert np.asarray(load_image(tmp_path / "wide.tif")).tolist() == [[0, 10, 255, 255]]


def test_bilevel_to_l(tmp_path: Path) -> None:
    src = Image.new("1", (4, 4), 0)
    src.putpixel((2, 3), 1)
    src.save(tmp_path / "bw.png")
    img, mode = decode_image(tmp_path / "bw.png")
    assert (mode, img.mode) == ("1", "L")
    arr = np.asarray(img)
    assert arr[3, 2] == 255 and arr.sum() == 255


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp"])
def test_gray_stored_as_rgb_becomes_l(tmp_path: Path, ext: str) -> None:
    rng = np.random.default_rng(1)
    gray = Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), "L")
    gray.convert("RGB").save(tmp_path / f"g{ext}")
    img, mode = decode_image(tmp_path / f"g{ext}")
    assert (mode, img.mode) == ("RGB", "L")
    if ext != ".jpg":
        np.testing.assert_array_equal(np.asarray(img), np.asarray(gray))


def test_colour_rgb_stays_rgb(tmp_path: Path) -> None:
    src = _noise_rgb(8)
    src.save(tmp_path / "c.png")
    img = load_image(tmp_path / "c.png")
    assert img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img), np.asarray(src))


def test_plain_l_and_fully_loaded(tmp_path: Path) -> None:
    path = tmp_path / "l.png"
    Image.fromarray(np.full((5, 6), 9, np.uint8), "L").save(path)
    img = load_image(path)
    path.unlink()  # pixels must already be in memory
    assert img.mode == "L" and img.size == (6, 5)
    assert np.asarray(img).max() == 9


def test_image_extensions_and_hidden() -> None:
    assert IMAGE_EXTENSIONS == (
        ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp",
    )
    for name in (".DS_Store", "._x.png", "Thumbs.db", "thumbs.db", "desktop.ini", ".hidden"):
        assert is_hidden(Path("a") / name), name
    for name in ("x.png", "Thumbs.png", "dir.name"):
        assert not is_hidden(Path("a") / name), name
