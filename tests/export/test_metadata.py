"""Export params, metadata building/validation, sidecar lookup, runtime format detection."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import yaml

from medclass.config import parse_params
from medclass.errors import MedclassError
from medclass.export.metadata import build_metadata, check_metadata, dvc_md5, sidecar_metadata
from medclass.export.parity import compare, parity_failure, tile_batch
from medclass.export.runtime import detect_kind, load_runner

META = {"model": "simple_cnn_tiny", "classes": ["a", "b"], "image_size": 16, "channels": 1,
        "mean": [0.5], "std": [0.2], "epoch": 2, "params": {"seed": 1}}


def test_export_params_defaults_and_errors():
    params = parse_params({}).export
    assert params.formats == "all" and params.parity_batch == 32 and params.tolerance == 1e-4
    assert parse_params({"export": {"formats": ["onnx", "tflite"]}}).export.formats == [
        "onnx", "tflite"]
    for bad, match in (({"formats": ["onnx", "onnx"]}, "formats lists a format twice"),
                       ({"formats": []}, "formats is empty"),
                       ({"formats": ["keras"]}, r"export\.formats"),
                       ({"parity_batch": 0}, r"export\.parity_batch"),
                       ({"colour": 1}, "unknown key")):
        with pytest.raises(MedclassError, match=match) as exc:
            parse_params({"export": bad})
        assert "\n" not in str(exc.value)


def test_build_metadata_fields(tmp_path, monkeypatch):
    ckpt = tmp_path / "models" / "model.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights")
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"stages": {"finetune": {"outs": [
        {"path": "models/model.pt", "md5": "abc123"}]}}}))
    monkeypatch.chdir(tmp_path)
    meta = build_metadata(META, checkpoint="models/model.pt", test_metrics={"accuracy": 0.9},
                          calibration={"temperature": 1.7, "fitted_on": "val", "model": "x"})
    assert meta["temperature"] == 1.7 and meta["calibration"] == {"fitted_on": "val"}
    assert meta["best_epoch"] == 3 and meta["metrics"] == {"accuracy": 0.9}
    assert meta["revision"]["dvc_md5"] == "abc123"
    assert meta["revision"]["checkpoint_sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert meta["input"]["shape"] == ["batch", 1, 16, 16]
    assert meta["output"]["shape"] == ["batch", 2]
    assert build_metadata(META)["temperature"] == 1.0
    json.dumps(meta)  # JSON-serialisable
    with pytest.raises(MedclassError, match="lacks"):
        build_metadata({"model": "x"})


def test_dvc_md5_unknown_is_none(tmp_path):
    assert dvc_md5("models/model.pt", tmp_path / "missing.lock") is None


def test_check_metadata_rejects_broken_files():
    assert check_metadata({**META, "temperature": None}, "m")["temperature"] == 1.0
    with pytest.raises(MedclassError, match="lacks"):
        check_metadata({"model": "x"}, "m.onnx")
    with pytest.raises(MedclassError, match="channel values"):
        check_metadata({**META, "mean": [0.1, 0.2, 0.3]}, "m.onnx")
    with pytest.raises(MedclassError, match="temperature must be > 0"):
        check_metadata({**META, "temperature": -1}, "m.onnx")


def test_sidecar_lookup_order(tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"x")
    with pytest.raises(MedclassError, match="no metadata found"):
        sidecar_metadata(model)
    (tmp_path / "metadata.json").write_text(json.dumps(META))
    assert sidecar_metadata(model)["classes"] == ["a", "b"]
    (tmp_path / "model.tflite.json").write_text(json.dumps({**META, "classes": ["c", "d"]}))
    assert sidecar_metadata(model)["classes"] == ["c", "d"]


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit deprecation notices
def test_detect_kind_and_torchscript_pt(tmp_path):
    assert detect_kind("a.onnx") == "onnx" and detect_kind("b.TFLITE") == "tflite"
    with pytest.raises(MedclassError, match="unknown model format"):
        detect_kind("model.h5")
    scripted = torch.jit.trace(torch.nn.Linear(2, 2), torch.randn(1, 2))
    torch.jit.save(scripted, str(tmp_path / "ts.pt"))
    torch.save({"model": {}, "meta": META}, tmp_path / "ckpt.pt")
    assert detect_kind(tmp_path / "ts.pt") == "torchscript"
    assert detect_kind(tmp_path / "ckpt.pt") == "pytorch"


def test_load_runner_errors(tmp_path):
    with pytest.raises(MedclassError, match="not found"):
        load_runner(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.ts"
    bad.write_bytes(b"not an archive")
    with pytest.raises(MedclassError, match="cannot load as torchscript"):
        load_runner(bad)


def test_parity_helpers():
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert compare(ref, ref + 1e-6) == {"max_abs_diff": pytest.approx(1e-6),
                                        "top1_agreement": 1.0}
    out = compare(ref, np.array([[0.0, 1.0], [0.0, 1.0]]))
    assert out["top1_agreement"] == 0.5
    assert parity_failure(out, 2.0, strict_top1=True).startswith("parity: top-1 agreement")
    assert parity_failure(out, 2.0, strict_top1=False) is None
    assert "tolerance" in parity_failure(out, 1e-4, strict_top1=False)
    with pytest.raises(ValueError, match="non-finite"):
        compare(ref, ref * np.nan)
    assert tile_batch(np.arange(3)[:, None], 7)[:, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]
