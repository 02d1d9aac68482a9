"""The export pipeline and stage: failures after trying every format, skips, report, outputs."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import yaml

from medclass.config import ExportParams
from medclass.errors import MedclassError
from medclass.export.formats import FORMATS, Exporter
from medclass.export.formats.fixes import UNSUPPORTED
from medclass.export.pipeline import export_checkpoint, selected_formats, write_report
from medclass.export.status import failures
from medclass.io import save_checkpoint, write_json


def _boom(ctx, dest):
    dest.write_bytes(b"half-written")
    raise RuntimeError("converter exploded\nsecond line of a long traceback")


def _only(monkeypatch, *names):
    """Leave only ``names`` in the registry, so ``formats: all`` stays fast."""
    for name in list(FORMATS):
        if name not in names:
            monkeypatch.delitem(FORMATS, name)


def _export(helpers, tmp_path, formats, **kw):
    ckpt = helpers.make_checkpoint("simple_cnn_tiny", 16, {})
    params = ExportParams(formats=formats, parity_batch=4, latency_runs=1, **kw)
    return export_checkpoint(ckpt, helpers.images(4, 16), params, tmp_path / "export")


def test_selected_formats_follow_registry_order():
    assert selected_formats("all") == ["pytorch", "torchscript", "onnx", "tflite", "coreml",
                                       "tensorrt"]
    assert set(selected_formats("all")) == set(FORMATS)
    assert selected_formats(["onnx", "pytorch"]) == ["pytorch", "onnx"]


def test_failing_format_is_reported_after_trying_the_others(helpers, tmp_path, monkeypatch):
    monkeypatch.setitem(FORMATS, "onnx", Exporter("onnx", "model.onnx", _boom))
    report = _export(helpers, tmp_path, ["pytorch", "onnx", "torchscript"])
    status = {k: v["status"] for k, v in report["formats"].items()}
    assert status["pytorch"] == status["torchscript"] == "ok"
    assert status["onnx"] == "failed: RuntimeError: converter exploded"
    assert not (tmp_path / "export" / "model.onnx").exists()  # no half-written artifact
    assert (tmp_path / "export" / "model.ts").is_file()
    assert failures(report) == {"onnx": status["onnx"]}
    with pytest.raises(MedclassError, match=r"export failed for 1 format\(s\) \(onnx: Runtime"):
        write_report(tmp_path / "export.json", report)
    written = json.loads((tmp_path / "export.json").read_text())
    assert written["formats"]["onnx"] == report["formats"]["onnx"]


def test_missing_toolchain_is_a_skip_with_all(helpers, tmp_path, monkeypatch):
    _only(monkeypatch, "pytorch", "onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx → ModuleNotFoundError
    report = _export(helpers, tmp_path, "all")
    assert report["formats"]["onnx"] == {
        "status": "skipped: onnx not installed (pip install -e '.[onnx]')"}
    assert report["formats"]["pytorch"]["status"] == "ok"
    assert failures(report) == {}
    write_report(tmp_path / "export.json", report)  # does not raise


def test_missing_toolchain_of_a_named_format_fails(helpers, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    report = _export(helpers, tmp_path, ["pytorch", "onnx"])
    assert report["formats"]["onnx"] == {"status": "failed: requested but skipped: onnx not "
                                                   "installed (pip install -e '.[onnx]')"}
    with pytest.raises(MedclassError) as exc:
        write_report(tmp_path / "export.json", report)
    assert str(exc.value) == (
        "export: onnx was requested but skipped: onnx not installed (pip install -e '.[onnx]'); "
        "install what the reason names or remove it from export.formats")


def test_tensorrt_without_cuda_is_skipped_with_all(helpers, tmp_path, monkeypatch):
    _only(monkeypatch, "pytorch", "tensorrt")
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    report = _export(helpers, tmp_path, "all")
    assert report["formats"]["tensorrt"]["status"].startswith("skipped: no CUDA device")
    assert failures(report) == {}


def test_unsupported_model_gets_a_clear_status(helpers, tmp_path, monkeypatch):
    _only(monkeypatch, "pytorch", "torchscript")
    monkeypatch.setitem(UNSUPPORTED, ("pytorch", "simple_cnn_tiny"), "why")
    report = _export(helpers, tmp_path, "all")
    assert report["formats"]["torchscript"]["status"] == "ok"
    assert report["formats"]["pytorch"] == {
        "status": "skipped: unsupported for simple_cnn_tiny: why"}
    named = _export(helpers, tmp_path, ["pytorch", "torchscript"])
    with pytest.raises(MedclassError, match=r"^export: pytorch was requested but skipped: "
                       r"unsupported for simple_cnn_tiny: why; export this model to another"):
        write_report(tmp_path / "export.json", named)


def test_parity_beyond_tolerance_fails_the_format(helpers, tmp_path, monkeypatch):
    def noisy(ctx, dest):  # a "converter" that perturbs the weights
        state = {k: v + 0.05 if v.is_floating_point() else v
                 for k, v in ctx.model.state_dict().items()}
        save_checkpoint(dest, {"model": state, "meta": ctx.meta})

    monkeypatch.setitem(FORMATS, "pytorch", Exporter("pytorch", "model.pt", noisy))
    report = _export(helpers, tmp_path, ["pytorch"])
    assert report["formats"]["pytorch"]["status"].startswith("failed: parity: max_abs_diff")
    assert not (tmp_path / "export" / "model.pt").exists()


def _stage_repo(root, helpers, formats):
    """A minimal repository state for the export stage: params, split cache, checkpoint."""
    size = 16
    params = {"model": "simple_cnn_tiny", "data": {"image_size": size},
              "export": {"formats": formats, "parity_batch": 4, "latency_runs": 1},
              "repro": {"mode": "fast"}}  # run_stage in-process: pytest's torch is unpinned
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    cache = root / "data" / "split" / "cache"
    cache.mkdir(parents=True)
    np.save(cache / "test_images.npy", helpers.images(6, size))
    np.save(cache / "test_labels.npy", np.arange(6) % 3)
    write_json(root / "data" / "split" / "stats.json", {
        "classes": helpers.CLASSES, "mean": helpers.MEAN, "std": helpers.STD,
        "image_size": size, "channels": 1})
    save_checkpoint(root / "models" / "model.pt", helpers.make_checkpoint("simple_cnn_tiny",
                                                                           size, {}))
    write_json(root / "metrics" / "test.json", {"accuracy": 0.5})
    write_json(root / "models" / "calibration.json", {"temperature": 1.5, "fitted_on": "val"})


def test_stage_writes_outputs_and_metrics(helpers, tmp_path, monkeypatch):
    from medclass.stages import export as stage
    from medclass.stages._common import run_stage

    _stage_repo(tmp_path, helpers, ["pytorch", "torchscript"])
    monkeypatch.chdir(tmp_path)
    run_stage("export", stage.main)
    report = json.loads((tmp_path / "metrics" / "export.json").read_text())
    assert report["parity_images"] == 4
    assert {k: v["status"] for k, v in report["formats"].items()} == {
        "pytorch": "ok", "torchscript": "ok"}
    timings = json.loads((tmp_path / "logs" / "export_timings.json").read_text())
    for name in ("pytorch", "torchscript"):  # wall-clock figures only in the untracked log
        assert not {"export_s", "latency_ms_b1", "latency_ms_b32"} & set(report["formats"][name])
        assert timings["formats"][name]["latency_ms_b1"] > 0
    meta = json.loads((tmp_path / "models" / "export" / "metadata.json").read_text())
    assert meta["metrics"] == {"accuracy": 0.5}
    assert meta["temperature"] == report["temperature"] == 1.5  # from the evaluate stage
    assert meta["calibration"] == {"fitted_on": "val"}
    assert meta["revision"]["checkpoint"] == "models/model.pt"
    assert len(meta["revision"]["checkpoint_sha256"]) == 64
    assert sorted(p.name for p in (tmp_path / "models" / "export").iterdir()) == [
        "metadata.json", "model.pt", "model.ts"]
    from medclass.export.runtime import load_runner

    assert load_runner(tmp_path / "models" / "export" / "model.ts").meta["temperature"] == 1.5


def test_stage_exits_2_with_one_line_when_a_format_fails(helpers, tmp_path, monkeypatch,
                                                          capsys):
    from medclass.stages import export as stage
    from medclass.stages._common import run_stage

    monkeypatch.setitem(FORMATS, "onnx", Exporter("onnx", "model.onnx", _boom))
    _stage_repo(tmp_path, helpers, ["pytorch", "onnx", "torchscript"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        run_stage("export", stage.main)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error [export]: export failed for 1 format(s) (onnx: ")
    report = json.loads((tmp_path / "metrics" / "export.json").read_text())
    assert report["formats"]["torchscript"]["status"] == "ok"  # tried after the failure


def test_stage_fails_when_a_named_format_is_skipped(helpers, tmp_path, monkeypatch, capsys):
    from medclass.stages import export as stage
    from medclass.stages._common import run_stage

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # no GPU, as on CI machines
    _stage_repo(tmp_path, helpers, ["pytorch", "tensorrt"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        run_stage("export", stage.main)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error [export]: export: tensorrt was requested but skipped: ")
    assert err[-1].endswith("; run on a machine with an NVIDIA GPU and the tensorrt package "
                            "or remove it from export.formats")
    report = json.loads((tmp_path / "metrics" / "export.json").read_text())
    assert report["formats"]["pytorch"]["status"] == "ok"
    assert report["formats"]["tensorrt"]["status"].startswith("failed: requested but skipped: ")


def test_known_gaps_are_skipped_without_converting(helpers, tmp_path, monkeypatch):
    from medclass.models.checks import TINY_KWARGS

    _only(monkeypatch, "onnx", "tensorrt")
    ckpt = helpers.make_checkpoint("swin", 16, dict(TINY_KWARGS["swin"]))
    params = ExportParams(formats="all", parity_batch=2, latency_runs=1)
    report = export_checkpoint(ckpt, helpers.images(2, 16), params, tmp_path / "export")
    for fmt in ("onnx", "tensorrt"):
        assert report["formats"][fmt]["status"].startswith("skipped: unsupported for swin: ")
    assert failures(report) == {}


ONNXSLIM_LINE = ("export.onnxslim is true but onnxslim is not installed; pip install onnxslim "
                 "or set export.onnxslim: false")


@pytest.mark.parametrize("formats", [["pytorch", "onnx"], "all"])
def test_onnxslim_without_the_package_is_an_error_before_exporting(helpers, tmp_path,
                                                                   monkeypatch, formats):
    monkeypatch.setitem(sys.modules, "onnxslim", None)  # import onnxslim → ModuleNotFoundError
    with pytest.raises(MedclassError) as exc:
        _export(helpers, tmp_path, formats, onnxslim=True)
    assert str(exc.value) == ONNXSLIM_LINE
    assert not (tmp_path / "export").exists()  # nothing exported, not even PyTorch


def test_onnxslim_option_is_ignored_without_onnx(helpers, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxslim", None)
    report = _export(helpers, tmp_path, ["pytorch"], onnxslim=True)
    assert report["formats"]["pytorch"]["status"] == "ok"


def test_stage_exits_2_on_onnxslim_without_the_package(helpers, tmp_path, monkeypatch, capsys):
    from medclass.stages import export as stage
    from medclass.stages._common import run_stage

    monkeypatch.setitem(sys.modules, "onnxslim", None)
    _stage_repo(tmp_path, helpers, ["onnx"])
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["export"]["onnxslim"] = True
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        run_stage("export", stage.main)
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error [export]: {ONNXSLIM_LINE}"
    assert not (tmp_path / "metrics" / "export.json").exists()
