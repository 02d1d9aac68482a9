"""verify and export write the same bytes on a rerun; wall-clock figures go to logs/ only.

Each stage runs as DVC runs it, ``python -m medclass.launch medclass.stages.X`` in a fresh
process, twice on a tiny project (prepare + split + an untrained model). Two runs in one
process would differ in the TorchScript archive only because TorchScript numbers the classes
it compiles per process (``___torch_mangle_N``); a fresh process starts the count again, as
every ``dvc repro`` does.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from medclass.stages import prepare, split
from medclass.stages._timings import is_timing_key, split_timings

TINY = {
    "model": "simple_cnn_tiny",
    "data": {"image_size": 16, "synthetic": {"classes": ["normal", "nodule", "effusion"],
                                             "images_per_class": 8, "size": 24}},
    "verify": {"models": ["simple_cnn_tiny", "small_resnet"], "latency_runs": 1},
    "train": {"progress": False},
    "export": {"formats": "all", "parity_batch": 4, "latency_runs": 1},
}
STAGES = ("verify", "export")
OUTPUTS = ("metrics/verify.json", "metrics/export.json", "plots/verify.md", "models/export")
CHECKED_DIRS = ("metrics", "plots", "models/export")
# The Core ML package's files, which coremltools alone would write differently on each run
COREML_MANIFEST = "models/export/model.mlpackage/Manifest.json"
COREML_SPEC = "models/export/model.mlpackage/Data/com.apple.CoreML/model.mlmodel"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _run_stages(root: Path) -> None:
    for stage in STAGES:
        proc = subprocess.run([sys.executable, "-m", "medclass.launch", f"medclass.stages.{stage}"],
                              cwd=root, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under the checked folders, by path relative to ``root``."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for d in CHECKED_DIRS for p in sorted((root / d).rglob("*")) if p.is_file()}


def _remove_outputs(root: Path) -> None:
    for rel in OUTPUTS:
        path = root / rel
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


@pytest.fixture(scope="module")
def two_runs(stage_project, untrained_model) -> tuple[Path, dict[str, bytes], dict[str, bytes]]:
    """The project and its files after a first and a second run of verify and export."""
    root = stage_project("repro_outputs", TINY, [prepare, split])
    untrained_model(root)
    _run_stages(root)
    first = _snapshot(root)
    _remove_outputs(root)  # the second run must write every output again
    _run_stages(root)
    return root, first, _snapshot(root)


def _keys(doc: Any) -> set[str]:
    if isinstance(doc, dict):
        return set(doc) | {k for v in doc.values() for k in _keys(v)}
    if isinstance(doc, list):
        return {k for v in doc for k in _keys(v)}
    return set()


def test_every_output_is_byte_identical_on_a_rerun(two_runs) -> None:
    _, first, second = two_runs
    assert set(first) == set(second)
    for rel in ("metrics/verify.json", "metrics/export.json", "plots/verify.md",
                "models/export/metadata.json", "models/export/model.pt",
                "models/export/model.ts", "models/export/model.onnx"):
        assert rel in first, rel
    differ = {rel for rel in first if first[rel] != second[rel]}
    assert not differ, sorted(differ)


def test_coreml_package_is_byte_stable(two_runs) -> None:
    """coremltools draws random item ids and writes protobuf maps in no fixed order; the
    exporter makes both stable (``coreml_format._make_stable``)."""
    _, first, second = two_runs
    if COREML_MANIFEST not in first:
        pytest.skip("coremltools is not installed (no Core ML package was built)")
    assert first[COREML_MANIFEST] == second[COREML_MANIFEST]
    assert first[COREML_SPEC] == second[COREML_SPEC]
    assert UUID.search(first[COREML_MANIFEST].decode())  # still UUIDs, now path-derived


def test_metrics_hold_no_timings(two_runs) -> None:
    root, _, _ = two_runs
    for name in ("verify", "export"):
        keys = _keys(json.loads((root / "metrics" / f"{name}.json").read_text()))
        assert not {k for k in keys if "latency" in k or k.endswith("_s")}, name
    verify = json.loads((root / "metrics/verify.json").read_text())
    assert verify == {"image_size": 16, "checked": 2, "passed": 2, "failed": [],
                      "selected": {**verify["selected"], "model": "simple_cnn_tiny", "ok": True},
                      "repro": verify["repro"]}
    assert "latency" not in (root / "plots/verify.md").read_text().split("\n\n")[0].lower()
    export = json.loads((root / "metrics/export.json").read_text())
    assert verify["repro"].startswith("exact: avx2") and export["repro"] == verify["repro"]
    assert export["formats"]["onnx"]["status"] == "ok"
    assert export["formats"]["onnx"]["max_abs_diff"] < 1e-4
    assert export["formats"]["onnx"]["top1_agreement"] == 1.0


def test_timings_go_to_the_untracked_logs(two_runs) -> None:
    root, _, _ = two_runs
    verify = json.loads((root / "logs/verify_timings.json").read_text())
    assert verify["stage"] == "verify" and verify["recorded_at"]
    assert set(verify["models"]) == {"simple_cnn_tiny", "small_resnet"}
    assert verify["models"]["small_resnet"]["latency_ms_b1"] > 0
    export = json.loads((root / "logs/export_timings.json").read_text())
    onnx = export["formats"]["onnx"]
    assert onnx["latency_ms_b1"] > 0 and onnx["latency_ms_b32"] > 0 and onnx["export_s"] >= 0
    assert onnx["latency_device"] == "cpu" and "status" not in onnx
    ignored = subprocess.run(["git", "check-ignore", "-q", "logs/export_timings.json"],
                             cwd=Path(__file__).resolve().parents[2])
    assert ignored.returncode == 0  # logs/ is in .gitignore


def test_split_timings_keeps_nesting_and_drops_empty_parts() -> None:
    doc = {"model": "m", "formats": {"a": {"status": "ok", "export_s": 1.0, "latency_ms_b1": 2.0,
                                           "fp16": {"latency_ms_b32": 3.0, "size_bytes": 4}},
                                     "b": {"status": "skipped"}}, "wall_s": 5.0}
    kept, timings = split_timings(doc)
    assert kept == {"model": "m", "formats": {"a": {"status": "ok", "fp16": {"size_bytes": 4}},
                                              "b": {"status": "skipped"}}}
    assert timings == {"formats": {"a": {"export_s": 1.0, "latency_ms_b1": 2.0,
                                         "fp16": {"latency_ms_b32": 3.0}}}, "wall_s": 5.0}
    assert not is_timing_key("max_abs_diff") and not is_timing_key("formats")
