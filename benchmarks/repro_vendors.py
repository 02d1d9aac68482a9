"""Do exact mode's pins give the same bits on Intel and AMD CPUs? Evidence by CPUID emulation.

Libraries choose kernels from what CPUID reports (vendor, instruction sets, cache sizes), so a
run under QEMU's user-mode emulator with another ``-cpu`` model takes the code paths that CPU
would get. QEMU's TCG computes each instruction exactly (IEEE arithmetic, FMA included): with
an Intel model the emulated bits equal the native ones (checked in every run, ``control``).

For each configuration (the exact pins of ``medclass.repro``, plus variants) and each CPU
model, a fresh process runs ``_vendor_probe.py``: two AdamW steps of ``simple_cnn_tiny`` and
a set of single operations, each hashed (``torch.sqrt`` and the foreach AdamW are there to
show the MKL vector-math path that follows the vendor; the pipeline avoids both). Equal
hashes across the models = the same bits.

Repeat (Debian/Ubuntu; ``apt-get install qemu-user``; ~2 min per emulated run)::

    PYTHONPATH=src python benchmarks/repro_vendors.py [--cpus Haswell,EPYC-Rome] [--configs exact]

Writes ``benchmarks/results/repro_vendors.json``. This is emulation, not a second machine:
what real machines reproduced is recorded by ``benchmarks/repro_check.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _machine import describe, write_results  # noqa: E402

from medclass.repro import exact_env  # noqa: E402

PROBE = BENCH / "_vendor_probe.py"
CPUS = ("native", "Haswell", "Skylake-Client", "EPYC-Rome", "EPYC-Milan")
# name -> (environment changes on top of exact_env(2), oneDNN on)
CONFIGS: dict[str, tuple[dict[str, str], bool]] = {
    "exact": ({}, True),
    "exact-without-onednn": ({}, False),
    "exact-but-mkl-avx2-strict": ({"MKL_CBWR": "AVX2,STRICT"}, True),
}


def run_probe(cpu: str, changes: dict[str, str], onednn: bool) -> dict[str, Any]:
    """The probe's hashes on ``cpu`` (``native`` or a QEMU ``-cpu`` model) and its wall time."""
    env = {**os.environ, **exact_env(2), **changes, "PROBE_ONEDNN": "1" if onednn else "0",
           "PYTHONPATH": os.pathsep.join([str(BENCH.parent / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    prefix = [] if cpu == "native" else ["qemu-x86_64", "-cpu", cpu]
    t0 = time.perf_counter()
    proc = subprocess.run([*prefix, sys.executable, str(PROBE)], env=env, capture_output=True,
                          text=True, timeout=3600, check=False)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1:], "wall_s": None}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]),
            "wall_s": round(time.perf_counter() - t0, 1)}


def compare(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Which hashes differ from the native run's, per CPU model."""
    native = rows["native"]
    keys = [k for k in native if k not in ("wall_s", "cpu_capability")]
    return {cpu: sorted(k for k in keys if r.get(k) != native.get(k))
            for cpu, r in rows.items() if cpu != "native"}


def main() -> None:
    """Run every configuration on every CPU model; write the JSON and print a summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpus", default=",".join(CPUS[1:]))
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"of {', '.join(CONFIGS)}")
    ap.add_argument("--out", default=str(BENCH / "results" / "repro_vendors.json"))
    args = ap.parse_args()
    if shutil.which("qemu-x86_64") is None:
        raise SystemExit("repro_vendors.py needs QEMU's user-mode emulator: apt-get install "
                         "qemu-user (provides qemu-x86_64)")
    cpus = ["native", *[c for c in args.cpus.split(",") if c and c != "native"]]
    results = {}
    for name in args.configs.split(","):
        changes, onednn = CONFIGS[name]
        rows = {cpu: run_probe(cpu, changes, onednn) for cpu in cpus}
        results[name] = {"env_changes": changes, "onednn": onednn, "runs": rows,
                         "differs_from_native": compare(rows)}
        print(f"{name}: " + "; ".join(f"{c}: {d or 'identical'}"
                                      for c, d in results[name]["differs_from_native"].items()))
    write_results(args.out, {"machine": describe(), "qemu": _qemu_version(),
                             "exact_env": exact_env(2), "configs": results})


def _qemu_version() -> str:
    out = subprocess.run(["qemu-x86_64", "--version"], capture_output=True, text=True,
                         check=False).stdout
    return out.splitlines()[0] if out else "unknown"


if __name__ == "__main__":
    main()
