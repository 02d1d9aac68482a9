"""benchmarks/gpu_check.py on a machine without CUDA: every section skipped at once, JSON written;
and the section runner's failure isolation (plain functions, no GPU needed)."""

import argparse
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import gpu_check  # noqa: E402

SECTIONS = {"train", "pipeline", "tensorrt", "ddp"}


@pytest.fixture
def no_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: gpu_check.py would run the real GPU sections")


def test_without_cuda_every_section_is_skipped(tmp_path, no_cuda):
    out = tmp_path / "gpu_check.json"
    returned = gpu_check.main(["--out", str(out)])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(returned))
    assert set(written) == SECTIONS | {"machine"}
    for name in SECTIONS:
        assert written[name] == {"status": "skipped: no CUDA device"}, name
    machine = written["machine"]
    assert machine["cuda_device"] is None and machine["cuda_device_count"] == 0
    assert machine["torch"] == torch.__version__ and machine["cuda"] == torch.version.cuda
    assert {"cudnn", "tensorrt", "nvidia_driver", "cpu_model", "versions"} <= set(machine)


def test_only_runs_the_named_sections(tmp_path, no_cuda):
    out = tmp_path / "gpu.json"
    gpu_check.main(["--out", str(out), "--only", "ddp,train"])
    assert set(json.loads(out.read_text())) == {"machine", "ddp", "train"}
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--out", str(out), "--only", "ddp,trian"])
    assert exc.value.code == 2


def test_a_failing_section_is_recorded_and_the_next_one_runs():
    def boom(args):
        raise RuntimeError("engine build failed\nlong TensorRT log line")

    def fine(args):
        return {"img_s": 123.0}

    snapshots = []
    results = gpu_check.run_sections({"boom": boom, "fine": fine}, argparse.Namespace(),
                                     cuda=True, done=lambda r: snapshots.append(dict(r)))
    assert results["boom"]["status"] == "failed: RuntimeError: engine build failed"
    assert results["fine"]["status"] == "ok" and results["fine"]["img_s"] == 123.0
    assert "section_s" in results["fine"]
    assert [set(s) for s in snapshots] == [{"boom"}, {"boom", "fine"}]


def test_pipeline_overrides_are_valid_params(tmp_path):
    """The overrides go through the params schema (an unknown key or bad value raises)."""
    shutil.copy(BENCH.parent / "params.yaml", tmp_path / "params.yaml")
    gpu_check.set_params(tmp_path, gpu_check.PIPELINE_PARAMS)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert params["train"]["device"] == "cuda"
    assert params["finetune"]["epochs"] == params["head"]["epochs"] == 1
    assert params["model"] == yaml.safe_load((BENCH.parent / "params.yaml").read_text())["model"]


def test_error_line_names_the_stage_error_or_the_root_exception():
    dvc = ("Running stage 'finetune':\n> python -m medclass.launch medclass.stages.finetune\n"
           "error [finetune]: train.device: cuda requested but no CUDA device is visible\n"
           "ERROR: failed to reproduce 'finetune': failed to run: python, exited with 2\n")
    assert gpu_check.error_line(dvc).startswith("error [finetune]: train.device")
    torchrun = ("Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                "RuntimeError: Found no NVIDIA driver on your system\n"
                "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
                "  traceback : To enable traceback see: https://pytorch.org/errors.html\n")
    assert gpu_check.error_line(torchrun) == "RuntimeError: Found no NVIDIA driver on your system"
    assert gpu_check.error_line("") == "no output"
