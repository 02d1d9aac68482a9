"""DICOM decoding (rescale, window, MONOCHROME1) and DICOM files inside folder sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medclass.config import DataParams
from medclass.data.dicom import decode_dicom, has_dicom_magic, is_dicom, window
from medclass.data.images import ImageDecodeError
from medclass.data.ingest import decode_file
from medclass.data.raw_manifest import read_raw_manifest
from medclass.data.sources import prepare_raw


def write_dcm(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2",
              bits: int | None = None, file_format: bool = True, **tags: Any) -> Path:
    """A minimal single-frame Secondary Capture file holding ``pixels`` and ``tags``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.set_pixel_data(pixels, photometric, bits or pixels.dtype.itemsize * 8,
                      generate_instance_uid=False)
    for key, value in tags.items():
        setattr(ds, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=file_format, implicit_vr=False, little_endian=True)
    return path


def _gray(path: Path) -> np.ndarray:
    img, mode = decode_dicom(path)
    assert img.mode == "L" and mode.startswith("DICOM ")
    return np.asarray(img)


# ---------------------------------------------------------------- decoding rules


def test_rescale_then_linear_window(tmp_path: Path) -> None:
    stored = np.array([[0, 1000], [2000, 3000]], np.uint16)
    # values = 2 * stored - 1000 = [[-1000, 1000], [3000, 5000]]; LINEAR window C=2000, W=4001:
    # y = ((v - 1999.5) / 4000 + 0.5) * 255 -> [[<0, 63.78], [191.28, >255]]
    path = write_dcm(tmp_path / "a.dcm", stored, RescaleSlope=2, RescaleIntercept=-1000,
                     WindowCenter=2000, WindowWidth=4001)
    np.testing.assert_array_equal(_gray(path), [[0, 64], [191, 255]])


def test_multi_valued_window_uses_the_first_preset(tmp_path: Path) -> None:
    stored = np.array([[0, 1000], [2000, 3000]], np.uint16)
    path = write_dcm(tmp_path / "a.dcm", stored, RescaleSlope=2, RescaleIntercept=-1000,
                     WindowCenter=[2000, 40], WindowWidth=[4001, 400])
    np.testing.assert_array_equal(_gray(path), [[0, 64], [191, 255]])


def test_ct_hounsfield_soft_tissue_window(tmp_path: Path) -> None:
    stored = np.array([[-2000, 1024], [1064, 3000]], np.int16)  # HU -3024, 0, 40, 1976
    path = write_dcm(tmp_path / "ct.dcm", stored, RescaleSlope=1,
                     RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400)
    # LINEAR, C=40, W=400: y = ((HU - 39.5) / 399 + 0.5) * 255
    np.testing.assert_array_equal(_gray(path), [[0, 102], [128, 255]])


def test_window_functions_exact_and_sigmoid() -> None:
    values = np.array([1000.0, 2000.0, 3000.0])
    np.testing.assert_allclose(window(values, 2000, 4000, "LINEAR_EXACT"), [63.75, 127.5, 191.25])
    sig = window(values, 2000, 4000, "SIGMOID")
    assert sig[1] == pytest.approx(127.5) and sig[0] == pytest.approx(255 - sig[2])
    np.testing.assert_array_equal(window(np.array([9.0, 10.0, 11.0]), 10, 1), [0, 255, 255])


def test_voi_lut_function_tag_is_honoured(tmp_path: Path) -> None:
    stored = np.array([[1000, 2000], [3000, 0]], np.uint16)
    path = write_dcm(tmp_path / "a.dcm", stored, WindowCenter=2000, WindowWidth=4000,
                     VOILUTFunction="LINEAR_EXACT")
    np.testing.assert_array_equal(_gray(path), [[64, 128], [191, 0]])


def test_without_window_min_max_stretch(tmp_path: Path) -> None:
    stored = np.array([[0, 100], [200, 300]], np.uint16)
    np.testing.assert_array_equal(_gray(write_dcm(tmp_path / "a.dcm", stored)),
                                  [[0, 85], [170, 255]])
    flat = write_dcm(tmp_path / "flat.dcm", np.full((4, 4), 7, np.uint16))
    assert _gray(flat).max() == 0
    bad_width = write_dcm(tmp_path / "w0.dcm", stored, WindowCenter=100, WindowWidth=0)
    np.testing.assert_array_equal(_gray(bad_width), [[0, 85], [170, 255]])


def test_monochrome1_is_inverted_after_window(tmp_path: Path) -> None:
    stored = np.array([[0, 100], [200, 300]], np.uint16)
    path = write_dcm(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1")
    img, mode = decode_dicom(path)
    assert mode == "DICOM MONOCHROME1"
    np.testing.assert_array_equal(np.asarray(img), [[255, 170], [85, 0]])
    windowed = write_dcm(tmp_path / "m1w.dcm", np.array([[0, 1000], [2000, 3000]], np.uint16),
                         photometric="MONOCHROME1", RescaleSlope=2, RescaleIntercept=-1000,
                         WindowCenter=2000, WindowWidth=4001)
    np.testing.assert_array_equal(_gray(windowed), [[255, 191], [64, 0]])


def _lut_item(data: list[int], bits: int, first: int = 0) -> Dataset:
    item = Dataset()  # LUTDescriptor (0028,3002) and LUTData (0028,3006) written as US
    item.add_new(0x00283002, "US", [len(data), first, bits])
    item.add_new(0x00283006, "US", data)
    return item


def test_modality_lut_sequence_is_applied(tmp_path: Path) -> None:
    # the LUT maps stored [[0, 1], [2, 3]] to [[3000, 0], [1000, 2000]]; the old rescale-only
    # decoder ignored it and stretched the stored values ([[0, 85], [170, 255]])
    from pydicom.sequence import Sequence

    lut = _lut_item([3000, 0, 1000, 2000], 16)
    lut.ModalityLUTType = "US"
    stored = np.array([[0, 1], [2, 3]], np.uint16)
    path = write_dcm(tmp_path / "mlut.dcm", stored, ModalityLUTSequence=Sequence([lut]))
    np.testing.assert_array_equal(_gray(path), [[255, 0], [85, 170]])
    # then windowed: LINEAR C=1500, W=1001 -> y = ((v - 1499.5) / 1000 + 0.5) * 255
    windowed = write_dcm(tmp_path / "mlutw.dcm", stored, ModalityLUTSequence=Sequence([lut]),
                         WindowCenter=1500, WindowWidth=1001)
    np.testing.assert_array_equal(_gray(windowed), [[255, 0], [0, 255]])


def test_voi_lut_sequence_wins_over_the_window(tmp_path: Path) -> None:
    # an 8-bit VOI LUT (not monotonic: no window or stretch could give it) starting at value 1
    from pydicom.sequence import Sequence

    stored = np.array([[0, 1], [2, 3], [4, 9]], np.uint16)
    voi = Sequence([_lut_item([200, 10, 255, 0], 8, first=1)])  # below 1: first, above: last
    path = write_dcm(tmp_path / "voi.dcm", stored, VOILUTSequence=voi, WindowCenter=2,
                     WindowWidth=4)
    np.testing.assert_array_equal(_gray(path), [[200, 200], [10, 255], [0, 0]])
    inverted = write_dcm(tmp_path / "voi1.dcm", stored, photometric="MONOCHROME1",
                         VOILUTSequence=voi)
    np.testing.assert_array_equal(_gray(inverted), [[55, 55], [245, 0], [255, 255]])
    wide = Sequence([_lut_item([0, 4095, 65535, 1024], 16)])  # 16-bit LUT scaled onto 0..255
    path16 = write_dcm(tmp_path / "voi16.dcm", stored[:2], VOILUTSequence=wide)
    np.testing.assert_array_equal(_gray(path16), [[0, 16], [255, 4]])


def test_rgb_dicom_and_8bit_passthrough(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    img, mode = decode_dicom(write_dcm(tmp_path / "rgb.dcm", rgb, photometric="RGB"))
    assert img.mode == "RGB" and mode == "DICOM RGB"
    np.testing.assert_array_equal(np.asarray(img), rgb)


def test_pydicom_bundled_ct_example() -> None:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")  # pydicom.examples.ct, bundled with pydicom
    if path is None:
        pytest.skip("pydicom's bundled CT_small.dcm is not installed")
    img, mode = decode_dicom(path)
    arr = np.asarray(img)
    assert img.mode == "L" and img.size == (128, 128) and mode == "DICOM MONOCHROME2"
    assert arr.min() == 0 and arr.max() == 255  # no window in the file: min..max stretch


def test_unreadable_dicom_reasons(tmp_path: Path) -> None:
    def reason(path: Path) -> str:
        with pytest.raises(ImageDecodeError) as info:
            decode_dicom(path)
        assert "\n" not in str(info.value)
        return str(info.value)

    (tmp_path / "empty.dcm").write_bytes(b"")
    assert "empty" in reason(tmp_path / "empty.dcm")
    (tmp_path / "junk.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 40)
    assert "DICOM" in reason(tmp_path / "junk.dcm")
    frames = np.zeros((3, 4, 4), np.uint16)
    multi = write_dcm(tmp_path / "multi.dcm", frames, NumberOfFrames=3)
    assert "multi-frame DICOM (3 frames)" in reason(multi)
    no_pixels = write_dcm(tmp_path / "nopix.dcm", np.zeros((4, 4), np.uint16))
    import pydicom

    ds = pydicom.dcmread(no_pixels)
    del ds.PixelData
    ds.save_as(no_pixels)
    assert "no pixel data" in reason(no_pixels)


def test_detection_by_extension_or_magic(tmp_path: Path) -> None:
    with_magic = write_dcm(tmp_path / "IM0001", np.zeros((4, 4), np.uint16))
    bare = write_dcm(tmp_path / "bare.DCM", np.zeros((4, 4), np.uint16), file_format=False)
    (tmp_path / "notes.txt").write_text("x" * 200)
    assert has_dicom_magic(with_magic) and is_dicom(with_magic)
    assert not has_dicom_magic(bare) and is_dicom(bare)  # no preamble: the extension decides
    assert not is_dicom(tmp_path / "notes.txt") and not is_dicom(tmp_path / "missing")
    assert decode_dicom(bare)[0].size == (4, 4)


# ---------------------------------------------------------------- folder source


def test_folder_source_mixes_png_and_dicom(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "normal").mkdir(parents=True)
    Image.fromarray(np.full((6, 6), 40, np.uint8), "L").save(src / "normal" / "p1.png")
    write_dcm(src / "normal" / "d1.dcm", np.arange(36, dtype=np.uint16).reshape(6, 6))
    write_dcm(src / "normal" / "series" / "IM0001", np.arange(36, dtype=np.uint16).reshape(6, 6))
    write_dcm(src / "normal" / "bare.dicom", np.ones((6, 6), np.uint16), file_format=False)
    (src / "normal" / "broken.dcm").write_bytes(b"not a dicom at all")
    (src / "normal" / "README").write_text("no extension, no DICM magic")
    write_dcm(src / "effusion" / "e1.dcm", np.array([[0, 100], [200, 300]], np.uint16)
              .repeat(3, axis=0).repeat(3, axis=1), photometric="MONOCHROME1")
    Image.fromarray(np.full((6, 6), 200, np.uint8), "L").save(src / "effusion" / "e2.png")
    write_dcm(src / "effusion" / "tiny.dcm", np.zeros((2, 2), np.uint16))

    out = tmp_path / "raw"
    report = prepare_raw(DataParams(source="folder", path=str(src)), 0, out)
    assert json.loads((out / "classes.json").read_text()) == {"classes": ["effusion", "normal"]}
    assert report["classes"] == {"effusion": 2, "normal": 4}
    rows = {r.path: r for r in read_raw_manifest(out / "manifest.csv")}
    assert sorted(rows) == [
        "effusion/e1.dcm", "effusion/e2.png",
        "normal/bare.dicom", "normal/d1.dcm", "normal/p1.png", "normal/series/IM0001",
    ]
    excluded = {e["path"]: e["reason"] for e in report["excluded"]}
    assert set(excluded) == {"normal/broken.dcm", "effusion/tiny.dcm"}
    assert "DICOM" in excluded["normal/broken.dcm"] and "too small" in excluded["effusion/tiny.dcm"]
    assert {e["path"] for e in report["ignored"]} == {"normal/README"}
    assert report["modes"] == {"DICOM MONOCHROME1": 1, "DICOM MONOCHROME2": 3, "L": 2}
    assert rows["effusion/e1.dcm"].mode == "L" and rows["normal/series/IM0001"].label == 1
    img, _ = decode_file(src / "effusion" / "e1.dcm")  # what split decodes: inverted min-max
    np.testing.assert_array_equal(np.asarray(img)[::3, ::3], [[255, 170], [85, 0]])
