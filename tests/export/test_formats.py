"""Every format for a CNN, a transformer and MobileOne: files, parity, latency, skip reasons."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

from medclass.export.runtime import load_runner

MODEL_KEYS = ["cnn", "transformer", "mobileone"]
RUNNABLE = {  # format → package that must be importable for it to be exported and run here
    "pytorch": None, "torchscript": None, "onnx": "onnxruntime", "tflite": "ai_edge_litert",
}


def _has(module: str | None) -> bool:
    return module is None or importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("key", MODEL_KEYS)
@pytest.mark.parametrize("fmt", list(RUNNABLE))
def test_runnable_formats_match_pytorch(exported, key, fmt):
    if not _has(RUNNABLE[fmt]):
        pytest.skip(f"{RUNNABLE[fmt]} not installed (optional extra)")
    out, report = exported(key)
    entry = report["formats"][fmt]
    assert entry["status"] == "ok", entry
    assert entry["max_abs_diff"] <= 1e-4
    assert entry["top1_agreement"] == 1.0
    assert entry["latency_ms_b1"] > 0 and entry["latency_ms_b32"] > 0
    assert entry["size_bytes"] == (out / entry["file"]).stat().st_size > 0
    assert report["parity_images"] == 8


@pytest.mark.parametrize("key", MODEL_KEYS)
@pytest.mark.parametrize("fmt", ["pytorch", "torchscript", "onnx", "tflite"])
def test_reloaded_artifact_runs_other_batch_sizes(exported, helpers, key, fmt):
    """Independent of the pipeline's own check: reload, run batch 3 and 1, compare."""
    if not _has(RUNNABLE[fmt]):
        pytest.skip(f"{RUNNABLE[fmt]} not installed (optional extra)")
    out, report = exported(key)
    reference = load_runner(out / "model.pt")
    runner = load_runner(out / report["formats"][fmt]["file"])
    assert runner.meta["classes"] == helpers.CLASSES
    x = np.random.default_rng(1).standard_normal((3, *runner.input_shape)).astype(np.float32)
    expected = reference(x)
    assert np.abs(runner(x) - expected).max() <= 1e-4
    assert np.abs(runner(x[1:2]) - expected[1:2]).max() <= 1e-4


def test_mobileone_is_exported_reparameterised(exported):
    out, report = exported("mobileone")
    assert report["reparameterized"] is True
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["reparameterized"] is True
    from medclass.io import load_checkpoint

    keys = load_checkpoint(out / "model.pt")["model"].keys()
    assert any(".reparam." in k for k in keys)
    assert not any(".branches." in k or ".identity." in k for k in keys)


def test_metadata_is_written_and_embedded(exported, helpers):
    out, _ = exported("cnn")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["classes"] == helpers.CLASSES
    assert (meta["image_size"], meta["channels"]) == (16, 1)
    assert meta["mean"] == helpers.MEAN and meta["std"] == helpers.STD
    assert meta["temperature"] == 1.0 and meta["best_epoch"] == 5
    assert meta["input"]["layout"] == "NCHW" and meta["input"]["shape"] == ["batch", 1, 16, 16]
    assert load_runner(out / "model.ts").meta["classes"] == helpers.CLASSES


def test_coreml_off_macos_is_built_not_ok(exported):
    """Linux converts and checks the spec but cannot run Core ML: ``built``, no parity numbers."""
    pytest.importorskip("coremltools", reason="coreml extra not installed")
    if sys.platform == "darwin":
        pytest.skip("on macOS Core ML predictions run; this checks the Linux status")
    out, report = exported("cnn")
    entry = report["formats"]["coreml"]
    assert entry["status"].startswith("built: needs macOS"), entry
    assert entry["max_abs_diff"] is None and entry["top1_agreement"] is None
    assert entry["spec_input_shape"][1:] == [1, 16, 16]
    assert entry["spec_outputs"] == ["logits"]
    assert (out / "model.mlpackage").is_dir()


def test_tensorrt_skipped_with_reason_without_toolchain(exported):
    import torch

    if _has("tensorrt") and torch.cuda.is_available():
        pytest.skip("TensorRT and CUDA present: the engine is built instead")
    status = exported("cnn")[1]["formats"]["tensorrt"]["status"]
    # CUDA is checked first: without it the reason is the same with or without the package
    expected = "tensorrt not installed" if torch.cuda.is_available() else "no CUDA device"
    assert status.startswith("skipped: ") and expected in status


def test_vit_input_fitting_is_frozen_for_traced_formats(exported):
    """DeiT's ``round()`` of traced sizes and its bicubic pos-embed resize need the fix."""
    formats = exported("transformer")[1]["formats"]
    assert formats["torchscript"]["converter_fix"] == "static_vit_geometry"
    assert "converter_fix" not in formats["pytorch"]


def test_torchscript_archive_has_no_temp_file_name(tmp_path):
    """The TorchScript export writes through a handle: the archive's inner folder is fixed, not
    the random temp name, so one model gives one file (DVC sees no change on a rerun)."""
    import zipfile

    from medclass.config import ExportParams
    from medclass.export.formats.base import ExportContext
    from medclass.export.formats.torch_formats import export_torchscript
    from medclass.models import create_model

    model = create_model("simple_cnn_tiny", num_classes=2, in_chans=1).eval()
    ctx = ExportContext(model, torch.zeros(2, 1, 16, 16), {"m": 1}, ExportParams(), tmp_path)
    export_torchscript(ctx, tmp_path / "a.ts")
    tops = {n.split("/")[0] for n in zipfile.ZipFile(tmp_path / "a.ts").namelist()}
    assert tops == {"archive"}, tops
