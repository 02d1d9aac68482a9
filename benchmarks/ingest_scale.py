"""Wall time and peak memory of the prepare and split stages on generated folder trees.

For each size, a pre-split folder tree (``train/`` and ``test/``, 80/20, each holding the same
``--classes`` class folders of grayscale PNGs) is generated under ``--work`` (not timed; in
parallel; reused by later runs when complete). Each image is smoothed random noise plus 1-3
random ellipses and a little pixel noise, from its own seed, so no two are near duplicates.
A fresh project folder then gets the repository's ``params.yaml`` with ``data.source: folder``
and ``data.path`` set to the tree (everything else, ``data.image_size`` included, as in the
repository), and the stages run there as DVC runs them: ``python -m medclass.stages.prepare``,
then ``python -m medclass.stages.split`` (the checkout's ``src/`` first on PYTHONPATH).

Per row: ``prepare_s`` and ``split_s`` (each including Python start-up), ``wall_s`` (their
sum), ``peak_mib`` (the larger peak resident set of the two stage processes, from
``os.wait4``; the stages use threads, so this is the stage's whole peak) and ``load`` (1-min
load average when the row started: the machine may be shared). Only the stage command lines
and params.yaml are relied on, not what prepare writes. Nothing is asserted.

Repeat (repo root, venv active; generating 100k images at 256 px takes a few minutes on
2 cores, the stages at 100k longer):

    python benchmarks/ingest_scale.py --sizes 1000 10000 100000 --px 64 --extra 100000:256
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe, write_results  # noqa: E402
from _workspace import REPO, make_env  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "ingest_scale.json"
WORK = Path(tempfile.gettempdir()) / "medclass-ingest-scale"
STAGES = ("prepare", "split")
_CHUNK = 500  # images per generation task


def image(seed: int, index: int, px: int) -> np.ndarray:
    """One (px, px) uint8 image: upsampled random noise, 1-3 blended ellipses, pixel noise."""
    rng = np.random.default_rng([seed, index])
    grid = max(4, px // 8)
    low = Image.fromarray((rng.random((grid, grid)) * 255).astype(np.uint8), "L")
    img = np.asarray(low.resize((px, px), Image.Resampling.BICUBIC), dtype=np.float32)
    yy, xx = np.ogrid[0:px, 0:px]
    for _ in range(int(rng.integers(1, 4))):
        (cy, cx), (ry, rx) = rng.uniform(0, px, 2), rng.uniform(px / 10, px / 3, 2)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        img[inside] = 0.5 * img[inside] + 0.5 * rng.uniform(0, 255)
    img += rng.standard_normal(img.shape, dtype=np.float32) * 4
    return np.clip(img, 0, 255).astype(np.uint8)


def image_path(index: int, classes: int) -> str:
    """Relative path of image ``index``: every 5th in test/, classes in turn."""
    split = "test" if index % 5 == 4 else "train"
    return f"{split}/class_{index % classes}/img_{index:06d}.png"


def _write_images(root: str, start: int, stop: int, px: int, classes: int, seed: int) -> int:
    """Write images ``start..stop-1`` under ``root`` (a worker task); return how many."""
    for i in range(start, stop):
        Image.fromarray(image(seed, i, px), "L").save(Path(root) / image_path(i, classes))
    return stop - start


def make_tree(work: Path, n: int, px: int, classes: int, seed: int, workers: int) -> Path:
    """The generated tree for these settings under ``work`` (reused when complete)."""
    root = work / f"tree_{n}_{px}px_{classes}c_s{seed}"
    marker = root / ".complete.json"
    if marker.is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)  # an interrupted generation starts over
    for split in ("train", "test"):
        for k in range(classes):
            (root / split / f"class_{k}").mkdir(parents=True)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        jobs = [pool.submit(_write_images, str(root), s, min(s + _CHUNK, n), px, classes, seed)
                for s in range(0, n, _CHUNK)]
        done = sum(job.result() for job in jobs)
    took = round(time.perf_counter() - t0, 1)
    marker.write_text(json.dumps({"images": done, "px": px, "generate_s": took}))
    print(f"generated {done} images at {px} px in {took} s: {root}", file=sys.stderr)
    return root


def write_project(project: Path, tree: Path) -> None:
    """A fresh folder with the repository's params.yaml reading ``tree`` as a folder source."""
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["data"].update(source="folder", path=str(tree.resolve()))
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False),
                                         encoding="utf-8")


def run_stage(project: Path, env: dict[str, str], stage: str) -> tuple[float, float]:
    """Run one stage as DVC does; return (wall seconds, peak resident MiB of its process)."""
    log = project / f"{stage}.log"
    t0 = time.perf_counter()
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", f"medclass.stages.{stage}"],
                                cwd=project, env=env, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"{stage} exited {proc.returncode} in {project}:\n{tail}")
    return wall, usage.ru_maxrss / 1024  # Linux: KiB


def bench_row(args: argparse.Namespace, n: int, px: int) -> dict[str, Any]:
    """Generate (or reuse) the tree, then time both stages in a fresh project."""
    tree = make_tree(args.work, n, px, args.classes, args.seed, args.workers)
    project = args.work / f"project_{n}_{px}px"
    write_project(project, tree)
    env = make_env(REPO)
    load = round(os.getloadavg()[0], 2)
    times, peaks = {}, {}
    for stage in STAGES:
        times[stage], peaks[stage] = run_stage(project, env, stage)
    if not args.keep:
        shutil.rmtree(project, ignore_errors=True)
    row = {"images": n, "image_px": px, "wall_s": round(sum(times.values()), 2),
           "prepare_s": round(times["prepare"], 2), "split_s": round(times["split"], 2),
           "peak_mib": round(max(peaks.values()), 1),
           "prepare_peak_mib": round(peaks["prepare"], 1),
           "split_peak_mib": round(peaks["split"], 1), "load": load}
    print(row, file=sys.stderr, flush=True)
    return row


def size_px(text: str) -> tuple[int, int]:
    """``N:PX`` -> (N, PX) for ``--extra``."""
    n, _, px = text.partition(":")
    try:
        return int(n), int(px)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N:PX, e.g. 100000:256, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--px", type=int, default=64, help="side of the --sizes images")
    ap.add_argument("--extra", type=size_px, nargs="*", default=[],
                    help="more rows as N:PX, e.g. 100000:256")
    ap.add_argument("--classes", type=int, default=3, choices=(2, 3, 4))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="processes generating images")
    ap.add_argument("--work", type=Path, default=WORK, help="generated trees (kept) + projects")
    ap.add_argument("--keep", action="store_true", help="keep the project folders")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [bench_row(args, n, px) for n, px in [(n, args.px) for n in args.sizes] + args.extra]
    write_results(args.out, {"machine": describe(), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
