"""Robust image decoding: every accepted file becomes a fully loaded mode "L" or "RGB" image.

Conversion rules (applied after EXIF orientation is undone):

* ``1`` (bilevel) -> ``L`` (0/255).
* ``LA``/``La``/``RGBA``/``RGBa``/``PA`` and ``P`` with transparency -> composited on black.
* ``P`` -> ``RGB``; ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` -> ``RGB``.
* 16-bit ``I;16*`` and 32-bit ``I`` -> ``L`` as ``round(value / 257)`` after clipping to
  0..65535, i.e. the full 16-bit range maps linearly onto 0..255 (``I`` is what PNG/TIFF
  decoders produce for 16-bit data, so it is treated as 16-bit).
* ``F`` (float) -> ``L``: values are taken as the 0..1 range (scaled by 255) when the image
  maximum is <= 1, otherwise as the 0..255 range; then clipped. NaN/inf become 0.
* ``RGB`` whose three channels are identical -> ``L`` (grey X-rays are often stored as RGB).
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from medclass.errors import MedclassError, exception_line

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp",
)
_HIDDEN_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx"})
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError,
                  TypeError, ZeroDivisionError)


class ImageDecodeError(MedclassError):
    """A file could not be decoded as an image; the message is a short reason."""


def is_hidden(path: str | os.PathLike) -> bool:
    """True for dotfiles and OS clutter (``Thumbs.db``, ``desktop.ini``, ``__MACOSX``)."""
    name = Path(path).name
    return name.startswith(".") or name.lower() in _HIDDEN_NAMES


def _is_gray_rgb(arr: np.ndarray) -> bool:
    first = arr[..., 0]
    return bool(np.array_equal(first, arr[..., 1]) and np.array_equal(first, arr[..., 2]))


def _composite_on_black(img: Image.Image) -> Image.Image:
    """Multiply colour by alpha (black background) and drop the alpha channel."""
    base_mode = "L" if img.mode in ("LA", "La") else "RGB"
    if img.mode not in ("LA", "RGBA"):
        img = img.convert("LA" if base_mode == "L" else "RGBA")
    arr = np.asarray(img, dtype=np.float32)
    alpha = arr[..., -1:] / 255.0
    out = np.rint(arr[..., :-1] * alpha).astype(np.uint8)
    return Image.fromarray(out[..., 0] if base_mode == "L" else out, base_mode)


def _scale_to_l(img: Image.Image) -> Image.Image:
    """Map 16/32-bit integer or float images onto 8-bit ``L`` (see module docstring)."""
    arr = np.asarray(img)
    if img.mode == "F":
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
        out = np.clip(np.rint(arr * scale), 0, 255)
    else:
        out = np.rint(np.clip(arr.astype(np.float64), 0, 65535) / 257.0)
    return Image.fromarray(out.astype(np.uint8), "L")


def _to_l_or_rgb(img: Image.Image) -> Image.Image:
    """Convert any decoded PIL mode to ``L`` or ``RGB`` following the module rules."""
    mode = img.mode
    if mode == "L":
        return img
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I") or mode == "F":
        return _scale_to_l(img)
    if mode == "P":
        palette_mode = img.palette.mode if img.palette is not None else ""
        has_alpha = "transparency" in img.info or palette_mode == "RGBA"
        img = _composite_on_black(img.convert("RGBA")) if has_alpha else img.convert("RGB")
    elif mode in ("LA", "La", "RGBA", "RGBa", "PA"):
        img = _composite_on_black(img)
    elif mode != "RGB":
        img = img.convert("RGB")
    if img.mode == "RGB":
        arr = np.asarray(img)
        if _is_gray_rgb(arr):
            return Image.fromarray(np.ascontiguousarray(arr[..., 0]), "L")
    return img


def check_readable(path: str | os.PathLike) -> Path:
    """``path`` as a Path; ``ImageDecodeError`` if it is empty or cannot be stat'ed."""
    p = Path(path)
    try:
        if p.stat().st_size == 0:
            raise ImageDecodeError("empty file (0 bytes)")
    except OSError as exc:
        raise ImageDecodeError(f"cannot read file ({exc.strerror or type(exc).__name__})") from exc
    return p


def decode_image(path: str | os.PathLike) -> tuple[Image.Image, str]:
    """Decode ``path``; return the ``L``/``RGB`` image and the file's original PIL mode.

    Raises ``ImageDecodeError`` (with a short reason) for empty, unreadable, truncated, corrupt,
    non-image or decompression-bomb files. Truncated files always fail
    (``LOAD_TRUNCATED_IMAGES`` is never enabled here).
    """
    p = check_readable(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(p) as img:
                img.load()
                original_mode = img.mode
                oriented = ImageOps.exif_transpose(img)
                converted = _to_l_or_rgb(oriented)
                converted.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageDecodeError("decompression bomb (too many pixels)") from exc
        except UnidentifiedImageError as exc:
            raise ImageDecodeError("not a recognised image format") from exc
        except OSError as exc:
            if exc.errno is None:  # Pillow's own decoder errors carry no errno
                raise ImageDecodeError(
                    f"corrupt or truncated image ({exception_line(exc)})") from exc
            raise ImageDecodeError(f"cannot read file ({exc.strerror})") from exc
        except _DECODE_ERRORS as exc:
            raise ImageDecodeError(f"corrupt or truncated image ({exception_line(exc)})") from exc
    return converted, original_mode


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` into a fully loaded ``L`` or ``RGB`` image (see module docstring)."""
    return decode_image(path)[0]
