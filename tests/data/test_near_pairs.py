"""The near-duplicate index (multi-index hashing in ``dedup.near_pairs``) against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from medclass.data import dedup
from medclass.data.dedup import (
    Fingerprint,
    components,
    exact_pairs,
    find_duplicates,
    hamming,
    hash_matrix,
    near_pairs,
    near_pairs_bruteforce,
)


def flip_bits(code: np.ndarray, n_bits: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of the (words,) uint64 ``code`` with ``n_bits`` distinct random bits flipped."""
    bits = np.unpackbits(code.view(np.uint8))
    bits[rng.choice(bits.size, n_bits, replace=False)] ^= 1
    return np.packbits(bits).view(np.uint64)


def random_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**64, (n, 4), dtype=np.uint64)  # 256 bits each


def planted(n: int, distances: list[int], seed: int = 0) -> tuple[np.ndarray, dict]:
    """``n`` random 256-bit codes (~128 bits apart), then one copy per entry of ``distances``
    of a distinct random code, that many bits away; returns codes and {(i, j): distance}."""
    rng = np.random.default_rng(seed)
    codes, pairs = list(random_codes(rng, n)), {}
    for d, src in zip(distances, rng.choice(n, len(distances), replace=False), strict=True):
        pairs[(int(src), len(codes))] = d
        codes.append(flip_bits(codes[src], d, rng))
    return np.array(codes), pairs


def clustered() -> np.ndarray:
    """20 centres with 30 codes each 0-12 bits away: crowded buckets, pairs 0-24 bits apart."""
    rng = np.random.default_rng(1)
    return np.array([flip_bits(c, int(rng.integers(0, 13)), rng)
                     for c in random_codes(rng, 20) for _ in range(30)])


def identical_mix() -> np.ndarray:
    """200 copies of one code, 50 codes 1-3 bits from it and 200 unrelated codes, shuffled."""
    rng = np.random.default_rng(2)
    base = random_codes(rng, 1)[0]
    codes = [base] * 200 + [flip_bits(base, int(d), rng) for d in rng.integers(1, 4, 50)]
    return rng.permutation(np.concatenate([codes, random_codes(rng, 200)]))


SCENARIOS = {"planted": lambda: planted(2000, [0, 1, 8, 9] * 10)[0], "clustered": clustered,
             "identical": identical_mix}


@pytest.mark.parametrize("max_distance", [0, 1, 8, 20, 64])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_index_finds_exactly_the_bruteforce_pairs(scenario: str, max_distance: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "_BLOCK_PAIRS", 1000)  # crowded buckets span several blocks
    codes = SCENARIOS[scenario]()
    expected = near_pairs_bruteforce(codes, max_distance)
    assert len(expected) > 0
    np.testing.assert_array_equal(near_pairs(codes, max_distance, method="index"), expected)
    np.testing.assert_array_equal(near_pairs(codes, max_distance), expected)  # auto


def test_bruteforce_reference_matches_pairwise_hamming() -> None:
    rng = np.random.default_rng(3)
    base = random_codes(rng, 1)[0]
    codes = np.array([flip_bits(base, int(d), rng) for d in rng.integers(0, 12, 60)])
    want = [[i, j] for i in range(60) for j in range(i + 1, 60)
            if hamming(codes[i].tobytes(), codes[j].tobytes()) <= 8]
    assert 0 < len(want) < 60 * 59 // 2 and near_pairs_bruteforce(codes, 8).tolist() == want


def test_twenty_thousand_codes_give_only_the_planted_pairs_without_brute_force(
        monkeypatch: pytest.MonkeyPatch) -> None:
    codes, pairs = planted(20_000, [0, 1, 8, 9] * 25)
    monkeypatch.setattr(dedup, "near_pairs_bruteforce", None)  # a fallback to N^2 would fail
    got = {(i, j) for i, j in near_pairs(codes, 8).tolist()}
    assert got == {p for p, d in pairs.items() if d <= 8} and len(got) == 75


def test_near_pairs_edge_cases() -> None:
    assert near_pairs(np.empty((0, 4), np.uint64), 8).shape == (0, 2)
    assert near_pairs(np.ones((1, 4), np.uint64), 8).shape == (0, 2)
    for method in ("index", "auto"):
        got = near_pairs(np.ones((300, 4), np.uint64), 0, method=method)
        assert len(got) == 300 * 299 // 2 and (got[:, 0] < got[:, 1]).all()
    every = near_pairs(random_codes(np.random.default_rng(5), 50), 256)  # all bits in reach
    assert len(every) == 50 * 49 // 2


def crafted_prints() -> list[Fingerprint]:
    """Equal hashes of different files, near/unrelated hashes, copies (some hash-changed)."""
    rng = np.random.default_rng(4)
    base = random_codes(rng, 1)[0]
    hashes = [base] * 30 + [flip_bits(base, int(d), rng) for d in rng.integers(1, 12, 40)]
    hashes += list(random_codes(rng, 100))
    prints = [Fingerprint(f"f{i}", f"p{i}", h.tobytes()) for i, h in enumerate(hashes)]
    for k, i in enumerate(rng.choice(len(hashes), 30)):
        code = hashes[i] if k % 3 else flip_bits(hashes[i], 2, rng)
        prints.append(Fingerprint(prints[i].file_sha256, f"x{k}", code.tobytes()))
    return prints


def test_find_duplicates_matches_a_pairwise_search() -> None:
    prints = crafted_prints()
    exact = exact_pairs(prints)
    exact_labels = components(len(prints), exact)
    pairs = near_pairs_bruteforce(hash_matrix([p.phash for p in prints]), 8).tolist()
    near = [(a, b) for a, b in pairs if exact_labels[a] != exact_labels[b]]
    dups = find_duplicates(prints, 8)
    np.testing.assert_array_equal(dups.labels, components(len(prints), exact + near))
    np.testing.assert_array_equal(dups.exact_labels, exact_labels)
    assert (dups.n_exact_pairs, dups.n_near_pairs) == (len(exact), len(near))
    assert len(near) > 500 and len(set(dups.labels.tolist())) < len(set(exact_labels.tolist()))


def test_thousands_of_identical_hashes_are_one_group_counted_pairwise() -> None:
    code = np.arange(4, dtype=np.uint64).tobytes()
    prints = [Fingerprint(f"f{i // 2}", f"p{i // 2}", code) for i in range(3000)]
    dups = find_duplicates(prints, 8)
    assert set(dups.labels.tolist()) == {0} and dups.n_exact_pairs == 2 * 1500
    assert dups.n_near_pairs == 3000 * 2999 // 2 - 1500  # pairs minus the exact copies


