"""DVC overhead of the pipeline: no-op ``dvc repro``/``dvc status`` and selective reruns.

In a fresh temp copy of the repository (the working tree's tracked and untracked-but-not-ignored
files, so ``params.yaml``/``dvc.yaml``/``src`` are the current ones; ``git init`` + commit; the
copied ``.dvc/config`` makes it a DVC repo) with tiny params (``TINY``), one full ``dvc repro``
runs first (``full``), then:

* ``noop_repro``: ``dvc repro`` with nothing changed (median of 3; target <= 3 s);
* ``noop_status``: ``dvc status`` with nothing changed (median of 3);
* ``evaluate.n_bins``: one ``dvc repro`` after changing ``evaluate.n_bins``;
* ``finetune.epochs``: one ``dvc repro`` after changing ``finetune.epochs``.

``stages_run`` comes from dvc's ``Running stage '<name>'`` lines; ``expected`` is what
``dvc.yaml``'s deps/params imply (``as_expected`` compares). Wall times include Python start-up
of each stage; the machine may be shared (see ``machine.loadavg_1_5_15``). Nothing is asserted.

Repeat (repo root, venv active; a few minutes on 2 cores):

    python benchmarks/repro_overhead.py            # --out PATH, --keep to keep the temp copy
    python benchmarks/repro_overhead.py --in-place # no-op timings of this checkout (default
                                                   # params; run after `dvc repro`)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _machine, when not run as a script

from _machine import describe, write_results  # noqa: E402
from _workspace import copy_repo, make_env, stages_run, timed  # noqa: E402

from medclass.config import parse_params  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "repro_overhead.json"
TARGET_NOOP_S = 3.0
TINY: dict[str, Any] = {
    "model": "simple_cnn_tiny",
    "data": {"image_size": 16, "synthetic": {"images_per_class": 12, "size": 16}},
    "verify": {"models": "selected"},
    "train": {"progress": False},
    "head": {"epochs": 1},
    "finetune": {"epochs": 1},
    "kfold": {"folds": 2, "epochs": 1, "head_epochs": 0},
    "evaluate": {"bootstrap": 50, "gradcam_per_class": 0},
    "export": {"formats": ["pytorch"]},
}
# What dvc.yaml implies. evaluate.n_bins changes metrics/test.json (ECE), a dep of export.
# kfold lists the whole `finetune` params group, so finetune.epochs reruns it too (its folds
# train with kfold.epochs, so the finished folds are reused).
EXPECTED = {
    "evaluate.n_bins": {"evaluate", "export"},
    "finetune.epochs": {"finetune", "evaluate", "kfold", "export"},
}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, nested dicts key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def set_params(repo: Path, over: dict[str, Any]) -> None:
    """Merge ``over`` into ``repo/params.yaml`` after checking the result validates."""
    path = repo / "params.yaml"
    merged = merge(yaml.safe_load(path.read_text(encoding="utf-8")), over)
    parse_params(merged, str(path))  # raises on an unknown key or a bad value
    path.write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")


def row(case: str, times: list[float], ran: list[str] | None,
        expected: set[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"case": case, "wall_s": round(statistics.median(times), 3),
                           "runs_s": [round(t, 3) for t in times], "stages_run": ran}
    if expected is not None:
        out["expected"] = sorted(expected)
        out["as_expected"] = set(ran or []) == expected
    print(f"{case:18s} {out['wall_s']:8.2f} s  ran: {ran}", file=sys.stderr, flush=True)
    return out


def bench(repo: Path, repeats: int) -> list[dict[str, Any]]:
    """Set up the copy in ``repo`` and time every case."""
    env = make_env(repo)
    copy_repo(repo)
    set_params(repo, TINY)
    subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "tiny params"], cwd=repo, env=env, check=True)
    rows = []
    full_s, out = timed(repo, env, "dvc", "repro")
    rows.append(row("full", [full_s], stages_run(out)))
    noop = [timed(repo, env, "dvc", "repro") for _ in range(repeats)]
    rows.append(row("noop_repro", [t for t, _ in noop],
                    sorted({s for _, o in noop for s in stages_run(o)}), expected=set()))
    status = [timed(repo, env, "dvc", "status") for _ in range(repeats)]
    rows.append(row("noop_status", [t for t, _ in status], None))
    for case, over in (("evaluate.n_bins", {"evaluate": {"n_bins": 10}}),
                       ("finetune.epochs", {"finetune": {"epochs": 2}})):
        set_params(repo, over)
        wall, out = timed(repo, env, "dvc", "repro")
        rows.append(row(case, [wall], stages_run(out), expected=EXPECTED[case]))
    return rows


def bench_in_place(repeats: int) -> list[dict[str, Any]]:
    """No-op ``dvc repro``/``dvc status`` in this checkout (it must be up to date)."""
    env = {**make_env(REPO), "PYTHONPATH": str(REPO / "src")}
    noop = [timed(REPO, env, "dvc", "repro") for _ in range(repeats)]
    ran = sorted({s for _, o in noop for s in stages_run(o)})
    if ran:
        raise SystemExit(f"the checkout was not up to date (ran {ran}); rerun after dvc repro")
    status = [timed(REPO, env, "dvc", "status") for _ in range(repeats)]
    return [row("noop_repro_default_params", [t for t, _ in noop], ran, expected=set()),
            row("noop_status_default_params", [t for t, _ in status], None)]


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| case | wall s | stages run | as expected |", "|---|---:|---|---|"]
    for r in rows:
        ran = "-" if r["stages_run"] is None else ", ".join(r["stages_run"]) or "(none)"
        ok = {True: "yes", False: f"no (expected {r.get('expected')})"}.get(
            r.get("as_expected"), "")
        lines.append(f"| {r['case']} | {r['wall_s']:.2f} | {ran} | {ok} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--repeats", type=int, default=3, help="no-op runs (median reported)")
    ap.add_argument("--keep", action="store_true", help="keep the temp copy (path printed)")
    ap.add_argument("--in-place", action="store_true",
                    help="only the no-op cases, in this checkout (default params)")
    args = ap.parse_args(argv)
    if args.in_place:
        rows = bench_in_place(args.repeats)
        print(markdown(rows))
        out = args.out if args.out != OUT else OUT.with_name("repro_noop_default.json")
        write_results(out, {"machine": describe(), "rows": rows, "target_noop_s": TARGET_NOOP_S})
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="medclass-repro-"))
    try:
        rows = bench(tmp / "repo", args.repeats)
    finally:
        if args.keep:
            print(f"kept {tmp / 'repo'}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    noop = next(r["wall_s"] for r in rows if r["case"] == "noop_repro")
    print(markdown(rows))
    print(f"\nno-op dvc repro: {noop:.2f} s (target <= {TARGET_NOOP_S:.0f} s: "
          f"{'met' if noop <= TARGET_NOOP_S else 'NOT met'})")
    write_results(args.out, {"machine": describe(), "params_override": TINY, "rows": rows,
                             "target_noop_s": TARGET_NOOP_S})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
