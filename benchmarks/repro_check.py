"""Does a fresh clone reproduce the committed outputs byte for byte here? And what does exact
mode cost against fast?

1. ``git clone`` this repository's HEAD into a temporary folder (no DVC cache: every output
   is recomputed), ``dvc repro -f`` there as committed (``repro.mode: exact``), then
   ``git status --porcelain``: every tracked file that changed (``dvc.lock``, metrics, plots)
   is listed; none means the machine reproduced the commit exactly.
2. ``repro.mode: fast`` in the clone's params.yaml, ``dvc repro -f`` again: the cost ratio,
   measured side by side on the same machine and load.

Repeat (repo root, venv active; about 2 x 3 minutes on 2 cores)::

    PYTHONPATH=src python benchmarks/repro_check.py [--skip-fast]

Appends one run to ``benchmarks/results/repro_check.json`` (``runs``, keyed by nothing but
order: the machine, the commit, identical or the changed files, both wall times). README's
"Reproducibility" section lists the CPU models with ``identical: true``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _machine import describe, write_results  # noqa: E402
from _workspace import REPO, make_env, timed  # noqa: E402
from repro_overhead import set_params  # noqa: E402

OUT = BENCH / "results" / "repro_check.json"


def changed_files(clone: Path, env: dict[str, str]) -> list[str]:
    """Tracked files that differ from the commit (``git status --porcelain``)."""
    out = subprocess.run(["git", "status", "--porcelain"], cwd=clone, env=env, check=True,
                         capture_output=True, text=True).stdout
    return sorted(line[3:] for line in out.splitlines() if line.strip())


def check(skip_fast: bool) -> dict[str, Any]:
    """Clone, reproduce exactly, compare; then time fast mode on the same clone."""
    with tempfile.TemporaryDirectory(prefix="medclass-repro-check-") as tmp:
        clone = Path(tmp) / "clone"
        env = make_env(clone)
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, check=True,
                                capture_output=True, text=True).stdout.strip()
        exact_s, _ = timed(clone, env, sys.executable, "-m", "dvc", "repro", "-f")
        changed = changed_files(clone, env)
        row: dict[str, Any] = {"commit": commit, "identical": not changed, "changed": changed,
                               "exact_s": round(exact_s, 1)}
        if not skip_fast:
            set_params(clone, {"repro": {"mode": "fast"}})
            fast_s, _ = timed(clone, env, sys.executable, "-m", "dvc", "repro", "-f")
            row.update(fast_s=round(fast_s, 1), exact_over_fast=round(exact_s / fast_s, 2))
    return row


def main() -> None:
    """Run the check and append it to the results file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-fast", action="store_true", help="only the exact reproduction")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    t0 = time.time()
    row = {"machine": describe(), **check(args.skip_fast)}
    previous = json.loads(args.out.read_text()).get("runs", []) if args.out.is_file() else []
    write_results(args.out, {"runs": [*previous, row]})
    print(json.dumps({k: v for k, v in row.items() if k != "machine"}, indent=1))
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
