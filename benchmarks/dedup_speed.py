"""Near-duplicate search: the multi-index hash search vs the all-pairs brute force.

Random 256-bit codes (the perceptual hashes' size; unrelated codes are ~128 bits apart) plus
one planted copy per 100 codes at 0-12 bits from a distinct code. For each size and
``max_distance`` it times ``dedup.near_pairs(method="index")`` (best of ``--repeats``) and,
up to ``--bruteforce-max`` codes, ``dedup.near_pairs_bruteforce`` (once) and checks that both
give the same pairs; above that the brute force is extrapolated as N^2 from the largest size
measured (``bruteforce_extrapolated``). ``index_peak_mib`` is the index's peak of traced
(numpy) allocations in a separate untimed call; ``planted_found`` says the index returned
exactly the planted pairs within the distance. At ``--whole-distance`` it also times the whole
grouping, ``dedup.find_duplicates``, on fingerprints of these codes plus exact copies of 1%
(``find_duplicates_s``). One process, single-threaded numpy; the machine may be shared (see
``machine.loadavg_1_5_15``). Nothing is asserted.

Repeat (repo root, venv active; a few minutes on 2 cores, mostly the brute force):

    python benchmarks/dedup_speed.py   # --sizes 1000 10000 100000 --distances 0 8 16 --out PATH
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe, write_results  # noqa: E402

from medclass.data.dedup import (  # noqa: E402
    Fingerprint,
    find_duplicates,
    near_pairs,
    near_pairs_bruteforce,
)

OUT = Path(__file__).resolve().parent / "results" / "dedup_speed.json"


def planted_codes(n: int, seed: int = 0) -> tuple[np.ndarray, dict[tuple[int, int], int]]:
    """``n`` random (N, 4) uint64 codes, the last ``n // 100`` copies of distinct earlier
    codes with 0-12 bits flipped; returns codes and {(source, copy): bits flipped}."""
    rng = np.random.default_rng(seed)
    k = n // 100
    codes = rng.integers(0, 2**64, (n, 4), dtype=np.uint64)
    src = rng.choice(n - k, k, replace=False)
    bits = np.unpackbits(codes[src].view(np.uint8), axis=1)
    flips = np.arange(k) % 13
    for row, d in enumerate(flips):
        bits[row, rng.choice(256, d, replace=False)] ^= 1
    codes[n - k :] = np.packbits(bits, axis=1).view(np.uint64)
    pairs = zip(src.tolist(), flips.tolist(), strict=True)
    return codes, {(s, n - k + i): d for i, (s, d) in enumerate(pairs)}


def best_time(fn: Any, repeats: int) -> tuple[float, Any]:
    """Fastest of ``repeats`` calls of ``fn()`` and its result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def index_peak_mib(codes: np.ndarray, max_distance: int) -> float:
    """Peak traced allocation (MiB) of one index search."""
    tracemalloc.start()
    near_pairs(codes, max_distance, method="index")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return round(peak / 2**20, 1)


def whole_search_s(codes: np.ndarray, max_distance: int) -> float:
    """Seconds of ``find_duplicates`` on fingerprints of ``codes`` (1% exact copies added)."""
    prints = [Fingerprint(f"f{i}", f"p{i}", c.tobytes()) for i, c in enumerate(codes)]
    prints += prints[: len(prints) // 100]
    t0 = time.perf_counter()
    find_duplicates(prints, max_distance)
    return round(time.perf_counter() - t0, 3)


def bench_size(n: int, distances: list[int], args: argparse.Namespace,
               bf_ref: dict[int, tuple[int, float]]) -> list[dict[str, Any]]:
    """Rows for one size: every distance, brute force measured or extrapolated."""
    codes, planted = planted_codes(n)
    rows = []
    for d in distances:
        index_s, pairs = best_time(lambda d=d: near_pairs(codes, d, method="index"), args.repeats)
        row: dict[str, Any] = {
            "n": n, "max_distance": d, "index_s": round(index_s, 4), "pairs": len(pairs),
            "planted_found": {tuple(p) for p in pairs.tolist()}
            == {p for p, k in planted.items() if k <= d},
            "index_peak_mib": index_peak_mib(codes, d),
        }
        if n <= args.bruteforce_max:
            bf_s, ref = best_time(lambda d=d: near_pairs_bruteforce(codes, d), 1)
            row.update(bruteforce_s=round(bf_s, 3), bruteforce_extrapolated=False,
                       same_pairs=bool(np.array_equal(ref, pairs)))
            bf_ref[d] = (n, bf_s)
        elif d in bf_ref:
            n0, t0 = bf_ref[d]
            row.update(bruteforce_s=round(t0 * (n / n0) ** 2, 1), bruteforce_extrapolated=True,
                       same_pairs=None)
        if d == args.whole_distance:
            row["find_duplicates_s"] = whole_search_s(codes, d)
        print(row, file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """Table of the rows (brute force marked ~ when extrapolated)."""
    lines = ["| N | max_distance | index s | brute force s | pairs | exact | find_duplicates s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        bf = r.get("bruteforce_s")
        bf_txt = "-" if bf is None else f"~{bf}" if r["bruteforce_extrapolated"] else f"{bf}"
        exact = r["planted_found"] and r.get("same_pairs") is not False
        lines.append(f"| {r['n']} | {r['max_distance']} | {r['index_s']} | {bf_txt} | "
                     f"{r['pairs']} | {exact} | {r.get('find_duplicates_s', '-')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 20000, 100000])
    ap.add_argument("--distances", type=int, nargs="+", default=[0, 8, 16])
    ap.add_argument("--bruteforce-max", type=int, default=20000,
                    help="largest N timed by brute force (larger: extrapolated as N^2)")
    ap.add_argument("--whole-distance", type=int, default=8,
                    help="distance at which find_duplicates is timed too")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    bf_ref: dict[int, tuple[int, float]] = {}
    rows = [r for n in sorted(args.sizes) for r in bench_size(n, args.distances, args, bf_ref)]
    print(markdown(rows))
    write_results(args.out, {"machine": describe(), "codes_bits": 256, "planted_per_100": 1,
                             "bruteforce_max": args.bruteforce_max, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
