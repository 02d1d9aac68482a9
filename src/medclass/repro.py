"""``repro.mode``: pin what decides the bits of a run, so a stage reproduces on any x86-64 CPU.

On the CPU the result of the same float computation depends on which kernels run, and each
library picks them from the processor when it loads: PyTorch's ATen its vector width
(``ATEN_CPU_CAPABILITY``), oneDNN (convolutions) its instruction set and its blocking from
the cache sizes, MKL (matrix products) its code path per CPU model (``MKL_CBWR``), OpenBLAS
(NumPy) its kernels per core type (``OPENBLAS_CORETYPE``); every parallel reduction's order
follows the thread count. ``exact`` pins all of them to AVX2, which every x86-64 server CPU of
the last decade runs, Intel and AMD alike:

* the environment variables above and the thread counts are read when the libraries load,
  so :func:`pin_environment` sets them before torch is imported (``medclass.launch``, which
  starts every stage, calls it);
* :func:`apply` (``run_stage``, after torch loaded) sets the torch-side switches (NNPACK
  off: it tiles convolutions by the cache sizes; deterministic algorithms; no TF32 on CUDA)
  and checks that the pins took effect.

Chosen by measurement (``benchmarks/repro_vendors.py``, CPUID emulation of Intel and AMD
models): with these pins the training step of the default model gives the same bits on
every model tried, oneDNN included. Two library paths follow the CPU vendor whatever the pins:
MKL's vector math behind ``torch.sqrt`` (so the optimizer is the fused AdamW, whose square
root is a vector instruction, and our code uses ``rsqrt``) and MKL's AVX2 branch of it under
``MKL_CBWR=AVX2`` (so ``COMPATIBLE``).

``fast`` changes nothing: all cores, every ISA the CPU has, bf16 where ``train.precision``
asks. Libraries read these settings once per process, so no function here can re-pin a
process whose torch is already loaded; the check says so instead of running unpinned.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

MODES = ("exact", "fast")
DEFAULT_MODE, DEFAULT_THREADS = "exact", 2
CUBLAS_WORKSPACE = ":4096:8"  # deterministic cuBLAS (CUDA docs, "Reproducibility")


def exact_env(threads: int) -> dict[str, str]:
    """The environment of an exact run with ``threads`` compute threads."""
    n = str(threads)
    return {
        "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised kernels: the AVX2 build
        "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN, wherever torch still calls it
        # MKL's conditional numerical reproducibility: COMPATIBLE, not AVX2, because MKL's
        # vector math (ATen's exp, log, ... on CPU) ignores an AVX2 pin on AMD CPUs
        # (benchmarks/repro_vendors.py: exp differed between emulated EPYC and Xeon CPUIDs)
        "MKL_CBWR": "COMPATIBLE",
        "OPENBLAS_CORETYPE": "Haswell",  # NumPy's OpenBLAS: its AVX2 kernels everywhere
        # NumPy's own SIMD loops (exp, log, ...) dispatch to AVX-512 where the CPU has it
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "CUBLAS_WORKSPACE_CONFIG": CUBLAS_WORKSPACE,
    }


def read_settings(path: Path = Path("params.yaml")) -> tuple[str, int]:
    """``(repro.mode, repro.threads)`` from ``path`` with only a YAML parser (the launcher
    runs this before torch loads; ``medclass.config`` validates the values later)."""
    import yaml

    if not path.is_file():
        return DEFAULT_MODE, DEFAULT_THREADS
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    repro = data.get("repro") or {}
    mode = repro.get("mode", DEFAULT_MODE) if isinstance(repro, dict) else DEFAULT_MODE
    threads = repro.get("threads", DEFAULT_THREADS) if isinstance(repro, dict) else 0
    if mode not in MODES or not isinstance(threads, int) or threads < 1:
        raise SystemExit(f"error [launch]: params.yaml: repro: mode must be one of {MODES} "
                         f"and threads an integer >= 1 (got mode={mode!r}, "
                         f"threads={threads!r})")
    return mode, threads


def pin_environment(mode: str, threads: int,
                    environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Set the exact-mode variables in ``environ`` (``os.environ``); returns one line per
    variable the environment had set otherwise (overridden, so the run stays exact)."""
    environ = os.environ if environ is None else environ
    if mode != "exact":
        return []
    notes = []
    for key, value in exact_env(threads).items():
        old = environ.get(key)
        if old is not None and old != value:
            notes.append(f"repro.mode exact: {key}={old} from the environment replaced by "
                         f"{value} (set repro.mode: fast to keep it)")
        environ[key] = value
    return notes


def pins_missing(threads: int, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """The exact-mode variables this process did not start with."""
    environ = os.environ if environ is None else environ
    return [k for k, v in exact_env(threads).items() if environ.get(k) != v]


def apply(mode: str, threads: int) -> dict[str, Any]:
    """Set torch's switches for ``mode`` and return what a checkpoint or metrics file records.

    Raises ``MedclassError`` when ``exact`` was asked but the process started unpinned (torch
    loaded before :func:`pin_environment`), naming how to start the stage instead.
    """
    import torch

    from medclass.errors import MedclassError

    if mode != "exact":
        return {"mode": mode}
    missing = pins_missing(threads)
    if missing:
        raise MedclassError(
            f"repro.mode exact: this process started without the CPU pins ({', '.join(missing)}"
            f" unset); run stages through `dvc repro` or `python -m medclass.launch "
            f"medclass.stages.<stage>`, or set repro.mode: fast")
    if torch.backends.cpu.get_cpu_capability() != "AVX2":
        raise MedclassError(
            f"repro.mode exact pins x86-64 AVX2 kernels, which this CPU lacks (torch reports "
            f"{torch.backends.cpu.get_cpu_capability()}); set repro.mode: fast (results will "
            f"then differ from the committed dvc.lock)")
    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = True  # capped at AVX2 by ONEDNN_MAX_CPU_ISA
    torch.backends.nnpack.set_flags(False)  # NNPACK tiles by the CPU's cache sizes
    torch.use_deterministic_algorithms(True, warn_only=True)  # CPU ops all have one
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return record(threads)


def record(threads: int) -> dict[str, Any]:
    """The exact mode's settings, identical on every machine (no CPU model, no host)."""
    import torch

    return {"mode": "exact", "threads": threads, "env": exact_env(threads), "onednn": "AVX2",
            "nnpack": False, "adamw": "fused",
            "deterministic_algorithms": True, "tf32": False, "precision": "fp32",
            "torch": torch.__version__.split("+")[0]}


def restart_pinned(mode: str, threads: int) -> None:
    """Re-execute a stage started as ``python -m medclass.stages.X`` through the launcher
    when exact mode's pins are missing (torch is already loaded, so only a new process can
    be pinned). In-process callers (tests, notebooks) are left alone: :func:`apply` says
    what to do instead."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", "") or ""
    if mode == "exact" and pins_missing(threads) and name.startswith("medclass.stages."):
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "medclass.launch", name])


def settings(mode: str, threads: int) -> dict[str, Any]:
    """What a checkpoint records: the full exact-mode settings, or just the mode."""
    return record(threads) if mode == "exact" else {"mode": mode}


def tag(mode: str, threads: int) -> str:
    """One metrics column naming the mode and its pins (``dvc exp show`` stays narrow)."""
    if mode != "exact":
        return mode
    env = exact_env(threads)
    return (f"exact: {env['ATEN_CPU_CAPABILITY']} threads={threads} "
            f"onednn={env['ONEDNN_MAX_CPU_ISA']} mkl_cbwr={env['MKL_CBWR']} "
            f"openblas={env['OPENBLAS_CORETYPE']} numpy=no-avx512 fp32")


def launcher_pins() -> None:
    """``medclass.launch``'s first step: pin the environment from params.yaml (printing each
    override) before anything imports torch; child processes (torchrun) inherit it."""
    mode, threads = read_settings()
    for line in pin_environment(mode, threads):
        print(f"[launch] {line}", file=sys.stderr)
