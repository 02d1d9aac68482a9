"""Export statuses: ok (ran and matched), built (cannot run here), failed, and `medclass info`."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from medclass.cli import app
from medclass.config import ExportParams
from medclass.errors import MedclassError
from medclass.export.metadata import STATUS_KEY
from medclass.export.pipeline import export_checkpoint, write_report
from medclass.export.status import failure_line, failures, kind_of, reason_of

pytest.importorskip("onnx", reason="onnx extra not installed")

ORT_MISSING = "built: onnxruntime not installed (pip install -e '.[onnx]')"


def _export(helpers, tmp_path, formats, **kw):
    ckpt = helpers.make_checkpoint("simple_cnn_tiny", 16, {})
    params = ExportParams(formats=formats, parity_batch=4, latency_runs=1, **kw)
    return export_checkpoint(ckpt, helpers.images(4, 16), params, tmp_path / "export")


def test_ok_means_it_ran_and_matched(helpers, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnx extra not installed")
    report = _export(helpers, tmp_path, ["torchscript", "onnx"])
    for name in ("torchscript", "onnx"):
        entry = report["formats"][name]
        assert entry["status"] == "ok", entry
        assert 0.0 <= entry["max_abs_diff"] <= 1e-4
        assert entry["top1_agreement"] == 1.0
        assert entry["latency_ms_b1"] > 0


def test_converted_without_its_runtime_is_built(helpers, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # converter here, runtime absent
    report = _export(helpers, tmp_path, ["pytorch", "onnx"])
    entry = report["formats"]["onnx"]
    assert entry["status"] == ORT_MISSING
    assert entry["max_abs_diff"] is None and entry["top1_agreement"] is None
    assert entry["size_bytes"] == (tmp_path / "export" / "model.onnx").stat().st_size > 0
    assert failures(report) == {}
    write_report(tmp_path / "export.json", report)  # a named format that is built is accepted


def test_parity_beyond_a_tiny_tolerance_fails(helpers, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnx extra not installed")
    report = _export(helpers, tmp_path, ["onnx"], tolerance=1e-12)
    status = report["formats"]["onnx"]["status"]
    assert kind_of(status) == "failed" and reason_of(status).startswith("parity: max_abs_diff")
    assert not (tmp_path / "export" / "model.onnx").exists()
    with pytest.raises(MedclassError, match=r"^export failed for 1 format\(s\) \(onnx: parity"):
        write_report(tmp_path / "export.json", report)


def test_info_prints_every_status_of_the_bundle(helpers, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    report = _export(helpers, tmp_path, ["pytorch", "onnx"])
    out = tmp_path / "export"
    for name, fmt in (("model.pt", "pytorch"), ("model.onnx", "onnx")):
        result = CliRunner().invoke(app, ["info", str(out / name)])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert doc["format"] == fmt
        assert doc[STATUS_KEY] == {"pytorch": "ok", "onnx": ORT_MISSING}
        assert doc[STATUS_KEY] == {n: e["status"] for n, e in report["formats"].items()}


def test_info_without_a_bundle_has_no_statuses(helpers, tmp_path):
    from medclass.io import save_checkpoint

    ckpt = helpers.make_checkpoint("simple_cnn_tiny", 16, {})
    save_checkpoint(tmp_path / "model.pt", ckpt)  # a training checkpoint, no export beside it
    result = CliRunner().invoke(app, ["info", str(tmp_path / "model.pt")])
    assert result.exit_code == 0, result.output
    assert STATUS_KEY not in json.loads(result.stdout)


def test_failure_line_names_failed_and_named_but_skipped_formats():
    report = {"formats": {
        "pytorch": {"status": "ok"},
        "onnx": {"status": "failed: RuntimeError: boom"},
        "coreml": {"status": "built: needs macOS"},
        "tflite": {"status": "failed: requested but skipped: litert_torch not installed"},
        "tensorrt": {"status": "failed: requested but skipped: no CUDA device"},
    }}
    assert failure_line(report, "metrics/export.json") == (
        "export failed for 1 format(s) (onnx: RuntimeError: boom); see metrics/export.json; "
        "tflite, tensorrt were requested but skipped (tflite: litert_torch not installed; "
        "tensorrt: no CUDA device); install what the reason names, run on a machine with an "
        "NVIDIA GPU and the tensorrt package, or remove them from export.formats")
    accepted = {"formats": {"coreml": {"status": "built: needs macOS"},
                            "tensorrt": {"status": "skipped: no CUDA device"}}}
    assert failure_line(accepted, "x.json") is None
