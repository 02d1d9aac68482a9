"""DICOM files in folder sources: decoded (pydicom) into 8-bit ``L`` or ``RGB`` images.

A file is DICOM when its extension is ``.dcm``/``.dicom`` (any case), or, whatever its name,
when it carries the ``DICM`` magic at byte 128 (scanner exports are often named ``IM0001`` or
by UID). Grayscale (``MONOCHROME1``/``MONOCHROME2``) values go through, in DICOM order:

1. Modality LUT: the Modality LUT Sequence when present, else the rescale ``value *
   RescaleSlope + RescaleIntercept`` (one of the two absent: 1 or 0);
2. VOI LUT: the first VOI LUT Sequence item when present (its output range, from the LUT
   descriptor's bit depth, scaled onto 0..255); else the VOI window, when ``WindowCenter``
   and ``WindowWidth`` are both present (the first value of a multi-valued one): the DICOM
   window function of ``VOILUTFunction`` (``LINEAR``, the default, ``LINEAR_EXACT`` or
   ``SIGMOID``; PS3.3 C.11.2.1.2) onto 0..255. Without a usable window (absent, or a width
   below 1) the image's own min..max is stretched over 0..255 (a constant image becomes 0);
3. ``MONOCHROME1`` (low values shown white) is inverted (``255 - v``), so the output always
   reads like ``MONOCHROME2`` (bone bright on a radiograph).

Steps 1 and 2 are pydicom's (``pydicom.pixels.apply_modality_lut``, ``apply_voi``,
``apply_windowing``); this module chooses among them, maps their output onto 8 bits, and keeps
the min..max fallback and the inversion, which pydicom leaves to the caller.

Colour (``RGB``; ``YBR_*``, which pydicom converts to RGB; ``PALETTE COLOR`` through its
lookup table) becomes ``RGB``, scaled from its stored bit depth to 8 bits, with no window.
Multi-frame files (``NumberOfFrames`` > 1: cine, tomosynthesis, stacks) are excluded with a
reason naming the frame count: one frame picked arbitrarily would be a silently wrong sample.
Every failure is an ``ImageDecodeError`` with a short reason, so the folder source reports and
excludes an unreadable DICOM exactly like an unreadable PNG.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medclass.data.images import ImageDecodeError, check_readable
from medclass.errors import exception_line

DICOM_EXTENSIONS: tuple[str, ...] = (".dcm", ".dicom")
_MAGIC_OFFSET = 128
_MAGIC = b"DICM"
_GRAY = ("MONOCHROME1", "MONOCHROME2")


def has_dicom_magic(path: str | os.PathLike) -> bool:
    """True when ``path`` has the DICOM Part 10 preamble + ``DICM`` magic (unreadable: False)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_MAGIC_OFFSET + len(_MAGIC))
    except OSError:
        return False
    return head[_MAGIC_OFFSET:] == _MAGIC


def is_dicom(path: str | os.PathLike) -> bool:
    """A ``.dcm``/``.dicom`` file, or any file with the DICOM magic at byte 128."""
    return Path(path).suffix.lower() in DICOM_EXTENSIONS or has_dicom_magic(path)


def _first(value: Any) -> float:
    """A DS/IS element's (first) value as float (multi-valued windows list several presets)."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):  # MultiValue too
        value = value[0]
    return float(value)


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM VOI window of ``values`` onto 0..255 (float, unrounded), by pydicom's
    ``apply_windowing`` with an 8-bit output range. ``width`` must be >= 1 (> 0 for
    ``LINEAR_EXACT``/``SIGMOID``)."""
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_windowing

    voi = Dataset()  # the window tags and an unsigned 8-bit output range, nothing else
    voi.PhotometricInterpretation = "MONOCHROME2"
    voi.WindowCenter, voi.WindowWidth = float(center), float(width)
    voi.VOILUTFunction = (function or "LINEAR").upper()
    voi.BitsStored, voi.PixelRepresentation = 8, 0
    return apply_windowing(np.asarray(values, dtype=np.float64), voi)


def _window_params(ds: Any) -> tuple[float, float, str] | None:
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    try:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    except (TypeError, ValueError, IndexError):
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    min_width = 1.0 if function == "LINEAR" else np.finfo(np.float64).tiny
    if not (np.isfinite(center) and np.isfinite(width)) or width < min_width:
        return None
    return center, width, function


def _voi_lut_bits(ds: Any) -> int | None:
    """Bits per entry of the first VOI LUT Sequence item, when it has a descriptor and data."""
    items = ds.get("VOILUTSequence")
    if not items or "LUTDescriptor" not in items[0] or "LUTData" not in items[0]:
        return None
    return int(items[0].LUTDescriptor[2])


def gray_to_uint8(ds: Any, pixels: np.ndarray) -> np.ndarray:
    """Modality LUT -> VOI LUT or window (or min-max) -> MONOCHROME1 inversion, as the module
    docstring says."""
    from pydicom.pixels import apply_modality_lut, apply_voi

    if pixels.dtype.kind == "f":
        pixels = np.nan_to_num(pixels, nan=0.0, posinf=0.0, neginf=0.0)
    if ("RescaleSlope" in ds) != ("RescaleIntercept" in ds):  # pydicom needs both
        ds.RescaleSlope = _first(ds.RescaleSlope) if "RescaleSlope" in ds else 1.0
        ds.RescaleIntercept = _first(ds.RescaleIntercept) if "RescaleIntercept" in ds else 0.0
    values = apply_modality_lut(pixels, ds)
    params = _window_params(ds)
    bits = _voi_lut_bits(ds)
    if bits is not None:  # a VOI LUT takes precedence over a window (as pydicom's default)
        index = values if values.dtype.kind in "iu" else np.rint(values).astype(np.int64)
        out = apply_voi(index, ds).astype(np.float64) * (255.0 / (2**bits - 1))
    elif params is not None:
        out = window(values, *params)
    else:
        values = values.astype(np.float64)
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        out = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        out = 255 - out
    return out


def _colour_to_uint8(ds: Any, pixels: np.ndarray, photometric: str) -> np.ndarray:
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        pixels = apply_color_lut(pixels, ds)
        bits = 8 if pixels.dtype == np.uint8 else 16
    else:
        bits = int(ds.get("BitsStored", 8) or 8)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ImageDecodeError(f"unexpected colour pixel shape {pixels.shape}")
    if bits == 8 and pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels)
    scaled = np.clip(pixels.astype(np.float64), 0, 2**bits - 1) * (255.0 / (2**bits - 1))
    return np.rint(scaled).astype(np.uint8)


def decode_dicom(path: str | os.PathLike) -> tuple[Image.Image, str]:
    """Decode a DICOM file into an ``L``/``RGB`` image; also return a mode label for the data
    report (``DICOM MONOCHROME2`` ...). Raises ``ImageDecodeError`` with a short reason."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    p = check_readable(path)
    force = p.suffix.lower() in DICOM_EXTENSIONS  # also read files written without a preamble
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns per odd tag; the reason says enough
        try:
            ds = pydicom.dcmread(p, force=force)
            if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                raise ImageDecodeError("DICOM file has no pixel data (not an image object)")
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            if frames > 1:
                raise ImageDecodeError(
                    f"multi-frame DICOM ({frames} frames); only single-frame images are used"
                )
            rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
            if rows * cols > 2 * (Image.MAX_IMAGE_PIXELS or rows * cols):
                raise ImageDecodeError("decompression bomb (too many pixels)")
            photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
            pixels = ds.pixel_array
            if photometric in _GRAY:
                if pixels.ndim != 2:
                    raise ImageDecodeError(f"unexpected grayscale pixel shape {pixels.shape}")
                img = Image.fromarray(gray_to_uint8(ds, pixels), "L")
            elif photometric in ("RGB", "PALETTE COLOR") or photometric.startswith("YBR"):
                img = Image.fromarray(_colour_to_uint8(ds, pixels, photometric), "RGB")
            else:
                raise ImageDecodeError(f"unsupported PhotometricInterpretation {photometric!r}")
        except ImageDecodeError:
            raise
        except InvalidDicomError as exc:
            raise ImageDecodeError(
                f"not a readable DICOM file ({exception_line(exc, limit=160)})") from exc
        except MemoryError as exc:
            raise ImageDecodeError("DICOM pixel data too large to decode") from exc
        except Exception as exc:  # pydicom raises many types for corrupt or exotic files
            raise ImageDecodeError(
                f"corrupt or undecodable DICOM ({exception_line(exc, limit=160)})") from exc
    return img, f"DICOM {photometric}"
