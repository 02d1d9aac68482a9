"""repro.mode: the pins, the refusals, and subprocess proof that each pin decides bits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medclass import repro
from medclass.config import Params
from medclass.errors import MedclassError

SRC = Path(__file__).resolve().parents[1] / "src"

# One fingerprint of what the pins govern: two fused-AdamW steps of a small CNN with exact
# mode's torch switches (oneDNN convolutions, MKL GEMM), a long float32 sum (ATen's vectorised
# reduction), a NumPy float32 matrix product (OpenBLAS) and a NumPy exp (its own SIMD loops).
STEP = """
import hashlib, numpy as np, torch
from medclass import repro
torch.backends.mkldnn.enabled = True
torch.backends.nnpack.set_flags(False)
from medclass.models import create_model
torch.manual_seed(0)
net = create_model("simple_cnn_tiny", num_classes=3, in_chans=1)
opt = torch.optim.AdamW(net.parameters(), lr=1e-2, fused=True)
g = torch.Generator().manual_seed(1)
x, y = torch.randn(32, 1, 16, 16, generator=g), torch.randint(0, 3, (32,), generator=g)
for _ in range(2):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
h = hashlib.sha256()
for p in net.parameters():
    h.update(p.detach().numpy().tobytes())
h.update(torch.randn(1_000_003, generator=g).sum().numpy().tobytes())
a = np.random.default_rng(0).standard_normal((96, 300), dtype=np.float32)
h.update((a @ a.T).tobytes())
h.update(np.exp(a.astype(np.float64)).tobytes())
print(h.hexdigest())
"""


def _fingerprint(**changes: str) -> str:
    env = {**os.environ, **repro.exact_env(2), **changes, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", STEP], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def pinned() -> str:
    return _fingerprint()


def test_same_pins_same_bits(pinned):
    assert _fingerprint() == pinned


@pytest.mark.parametrize("change", [
    {"ATEN_CPU_CAPABILITY": "default"},  # ATen's unvectorised kernels
    {"MKL_CBWR": "AVX2"},  # MKL's AVX2 GEMM instead of its compatible one
    {"OPENBLAS_CORETYPE": "Prescott"},  # OpenBLAS's SSE3 kernels
    {"OPENBLAS_NUM_THREADS": "1"},
    {"ONEDNN_MAX_CPU_ISA": "SSE41"},  # oneDNN's SSE4.1 convolutions
    {"NPY_DISABLE_CPU_FEATURES": ""},  # NumPy's AVX-512 loops (skipped below without it)
])
def test_each_pin_decides_bits(pinned, change):
    """A pin that stopped reaching the libraries (renamed variable, set after load) would
    leave the bits unchanged here."""
    if "NPY_DISABLE_CPU_FEATURES" in change and not _has_avx512():
        pytest.skip("this CPU has no AVX-512: NumPy's dispatch is the same with or without "
                    "the pin")
    assert _fingerprint(**change) != pinned


def _has_avx512() -> bool:
    import torch  # this test process is unpinned: torch reports the CPU's own level

    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def test_pin_environment_sets_and_reports_overrides():
    env = {"OMP_NUM_THREADS": "8", "MKL_CBWR": "COMPATIBLE"}
    notes = repro.pin_environment("exact", 2, env)
    assert env == repro.exact_env(2)
    assert notes == ["repro.mode exact: OMP_NUM_THREADS=8 from the environment replaced by 2 "
                     "(set repro.mode: fast to keep it)"]
    fast = {"OMP_NUM_THREADS": "8"}
    assert repro.pin_environment("fast", 2, fast) == [] and fast == {"OMP_NUM_THREADS": "8"}


def test_read_settings(tmp_path):
    path = tmp_path / "params.yaml"
    assert repro.read_settings(path) == ("exact", 2)  # no file: the defaults
    path.write_text(yaml.safe_dump({"repro": {"mode": "fast", "threads": 4}}))
    assert repro.read_settings(path) == ("fast", 4)
    path.write_text(yaml.safe_dump({"repro": {"mode": "exactly"}}))
    with pytest.raises(SystemExit, match="repro: mode must be one of"):
        repro.read_settings(path)


@pytest.mark.parametrize(("train", "key"), [
    ({"precision": "bf16"}, "train.precision: bf16"),
    ({"compile": True}, "train.compile"),
    ({"deterministic": False}, "train.deterministic"),
])
def test_exact_mode_refuses_what_breaks_it(train, key):
    with pytest.raises(ValueError, match=f"repro.mode exact: {key}.*or set repro.mode: fast"):
        Params(train=train)
    Params(train=train, repro={"mode": "fast"})  # fast accepts it


def test_auto_precision_is_fp32_in_exact_mode():
    assert Params().train.precision == "fp32"
    assert Params(repro={"mode": "fast"}).train.precision == "auto"


def test_apply_refuses_an_unpinned_process(monkeypatch):
    for key in repro.exact_env(2):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(MedclassError, match="started without the CPU pins.*medclass.launch"):
        repro.apply("exact", 2)
    assert repro.apply("fast", 2) == {"mode": "fast"}


def test_tag_and_settings_are_machine_independent():
    assert repro.tag("fast", 2) == "fast"
    assert repro.tag("exact", 3).startswith("exact: avx2 threads=3 onednn=AVX2")
    rec = repro.settings("exact", 2)
    assert rec["env"] == repro.exact_env(2)
    assert set(rec) == {"mode", "threads", "env", "onednn", "nnpack", "adamw", "tf32",
                        "deterministic_algorithms", "precision", "torch"}  # no machine facts


def test_a_stage_started_directly_restarts_through_the_launcher(tmp_path):
    """``python -m medclass.stages.prepare`` in exact mode re-executes via medclass.launch,
    which pins the environment; the output records the mode."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "data": {"image_size": 16, "synthetic": {"images_per_class": 4, "size": 16}}}))
    env = {k: v for k, v in os.environ.items() if k not in repro.exact_env(2)}
    env["PYTHONPATH"] = str(SRC)
    proc = subprocess.run([sys.executable, "-m", "medclass.stages.prepare"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = yaml.safe_load((tmp_path / "metrics" / "data_report.json").read_text())
    assert report["repro"] == repro.tag("exact", 2)
