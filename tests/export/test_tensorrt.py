"""TensorRT without a GPU: the skip reason, the fp16 graph the engine is built from (runs on ONNX
Runtime's CPU provider here), engines refused with one line, and the install extra."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from medclass.cli import app
from medclass.config import ExportParams
from medclass.export.formats import FORMATS, ExportContext, ToolchainMissing
from medclass.export.formats.onnx_format import write_onnx
from medclass.export.formats.tensorrt_format import fp16_onnx
from medclass.export.parity import compare
from medclass.export.runtime import TRT_NEEDS_GPU, NotRunnable, load_runner
from medclass.models import create_model
from medclass.models.rebuild import model_from_checkpoint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: engines are built and run instead")


def test_without_cuda_the_reason_is_no_cuda_device_installed_or_not(tmp_path, no_cuda):
    """CUDA is checked before ``tensorrt`` is imported: one reason on every CPU machine."""
    model = create_model("simple_cnn_tiny", num_classes=2, in_chans=1).eval()
    ctx = ExportContext(model, torch.zeros(2, 1, 16, 16), {}, ExportParams(), tmp_path)
    with pytest.raises(ToolchainMissing, match=r"^no CUDA device$"):
        FORMATS["tensorrt"].export(ctx, tmp_path / "model.engine")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("key", ["cnn", "transformer"])
def test_fp16_graph_has_float32_io_half_weights_and_stays_within_tolerance(helpers, tmp_path,
                                                                           key):
    onnx = pytest.importorskip("onnx", reason="onnx extra not installed")
    ort = pytest.importorskip("onnxruntime", reason="onnx extra not installed")
    name, size, kwargs = helpers.MODELS[key]
    model = model_from_checkpoint(helpers.make_checkpoint(name, size, kwargs)).eval()
    x = torch.randn(8, 1, size, size)
    fp32, fp16 = tmp_path / "model.onnx", tmp_path / "model_fp16.onnx"
    write_onnx(model, x, fp32, 18)
    fp16_onnx(fp32, fp16)
    proto = onnx.load(str(fp16))
    onnx.checker.check_model(proto)  # also requires topologically sorted nodes
    float_type = onnx.TensorProto.FLOAT
    assert [v.type.tensor_type.elem_type for v in [*proto.graph.input, *proto.graph.output]] == [
        float_type, float_type]
    kinds = {t.data_type for t in proto.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in kinds and float_type not in kinds
    session = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        reference = model(x).numpy()
    result = compare(reference, session.run(None, {"input": x.numpy()})[0])
    assert result["max_abs_diff"] <= ExportParams().fp16_tolerance
    assert result["max_abs_diff"] > 1e-6  # the half-precision rounding is really there


@pytest.mark.parametrize("suffix", [".engine", ".plan"])
def test_engine_without_cuda_is_refused_in_one_line(tmp_path, no_cuda, suffix):
    engine = tmp_path / f"model{suffix}"
    engine.write_bytes(b"not opened without a GPU")
    with pytest.raises(NotRunnable, match=re.escape(TRT_NEEDS_GPU)):
        load_runner(engine)
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(image)
    result = CliRunner().invoke(app, ["predict", str(engine), str(image), "--no-progress"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: cannot run this model here: {TRT_NEEDS_GPU}"


def _requirements(extras: dict[str, list[str]], name: str) -> list[str]:
    """Requirements of extra ``name`` with ``medclass[...]`` self-references expanded."""
    out: list[str] = []
    for req in extras[name]:
        nested = re.fullmatch(r"medclass\[(.+)\]", req)
        if nested:
            for inner in nested.group(1).split(","):
                out += _requirements(extras, inner.strip())
        else:
            out.append(req)
    return out


def test_tensorrt_extra_is_the_cuda13_wheel_and_not_part_of_all():
    tomllib = pytest.importorskip("tomllib") if sys.version_info < (3, 11) else __import__(
        "tomllib")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert "tensorrt-cu13>=11,<12" in _requirements(extras, "tensorrt")
    assert "onnxruntime" in " ".join(_requirements(extras, "tensorrt"))  # fp16 converter
    assert not [r for r in _requirements(extras, "all") if r.startswith("tensorrt")]
