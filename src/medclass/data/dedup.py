"""Exact and near-duplicate detection over the raw images, and the groups they form.

Each image gets a :class:`Fingerprint` while the split stage decodes it for the cache (one
decode per file): the SHA-256 of the file bytes, the SHA-256 of the decoded pixels (mode and
size included) and a 256-bit perceptual hash (``imagehash.phash`` with ``hash_size=16``:
DCT of a 64x64 grayscale thumbnail, 16x16 low frequencies thresholded at their median). Two
images are

* **exact duplicates** when their file bytes or their decoded pixels are identical;
* **near duplicates** when their perceptual hashes differ in at most ``max_distance`` bits
  (``split.near_duplicate_distance``; ``None`` turns the check off).

Why 256 bits: with the common 64-bit pHash, unrelated images that share a global layout (the
built-in synthetic chest films: 600 images) came within 4 bits of each other 83 times (largest
chain 11 images), while at 256 bits unrelated pairs were at least 36 bits apart and JPEG
(quality 90) or brightened copies 0-2 bits.

Near pairs come from an exact multi-index hash search (:func:`near_pairs`: the hash is cut
into at least ``max_distance + 1`` chunks, and two hashes within ``max_distance`` bits share at
least one chunk value), not from all N^2/2 pairs: ~0.15 s for 100k random hashes at 8 bits,
where the brute force (:func:`near_pairs_bruteforce`, the reference and the fallback for wide
radii) needs minutes. Identical hashes are searched once. Duplicate pairs are joined into
groups (connected components, scipy.sparse.csgraph), so a chain a~b~c puts all three in one
group.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import imagehash
import numpy as np
from PIL import Image
from scipy.sparse import coo_array, csr_array
from scipy.sparse.csgraph import connected_components

PHASH_SIZE = 16  # imagehash hash_size: PHASH_SIZE**2 = 256 bits
PHASH_BITS = PHASH_SIZE**2
# Words of the brute force's Hamming block: keeps the temporary (rows x N x 4) arrays near 64 MB.
_BLOCK_ELEMENTS = 8_000_000
# Candidate pairs the index verifies at once (two gathered (K, 4) word arrays: ~32 MB).
_BLOCK_PAIRS = 500_000
# Verifying one gathered candidate costs about this many brute-force pair comparisons (measured
# on 10k codes: ~50 vs ~35 ns); ``near_pairs`` takes the brute force when it is cheaper.
_CANDIDATE_COST = 1.5


@dataclass(frozen=True)
class Fingerprint:
    """Hashes of one image: file bytes, decoded pixels and the perceptual hash (32 bytes)."""

    file_sha256: str
    pixel_sha256: str
    phash: bytes


def fingerprint(img: Image.Image, data: bytes) -> Fingerprint:
    """Fingerprint a decoded (loaded) image whose file content is ``data``."""
    pixels = hashlib.sha256(f"{img.mode}:{img.width}x{img.height}:".encode())
    pixels.update(img.tobytes())
    bits = np.packbits(imagehash.phash(img, hash_size=PHASH_SIZE).hash.reshape(-1))
    return Fingerprint(hashlib.sha256(data).hexdigest(), pixels.hexdigest(), bits.tobytes())


def hamming(a: bytes, b: bytes) -> int:
    """Bits in which two perceptual hashes differ."""
    return int(np.bitwise_count(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).sum())


def hash_matrix(hashes: list[bytes]) -> np.ndarray:
    """(N, words) uint64 view of equal-length hashes (for :func:`near_pairs`)."""
    data = np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(len(hashes), -1)
    return data.view(np.uint64) if len(hashes) else np.empty((0, PHASH_BITS // 64), np.uint64)


def components(n: int, pairs: list[tuple[int, int]] | np.ndarray) -> np.ndarray:
    """Connected components of the graph on ``0..n-1`` with edges ``pairs`` (scipy.sparse.csgraph).

    Component ids are 0, 1, ... in order of each component's first element.
    """
    edges = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    graph = coo_array((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])),
                      shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first, kind="stable"), kind="stable")[inverse].astype(np.int64)


def _equal_key_pairs(keys: list[str]) -> list[tuple[int, int]]:
    """(first index, other index) for every later element with the same key."""
    first: dict[str, int] = {}
    pairs = []
    for i, key in enumerate(keys):
        if key in first:
            pairs.append((first[key], i))
        else:
            first[key] = i
    return pairs


def exact_pairs(prints: list[Fingerprint]) -> list[tuple[int, int]]:
    """Pairs linking images with identical file bytes or identical decoded pixels."""
    return _equal_key_pairs([p.file_sha256 for p in prints]) + _equal_key_pairs(
        [p.pixel_sha256 for p in prints]
    )


def near_pairs_bruteforce(phashes: np.ndarray, max_distance: int) -> np.ndarray:
    """(K, 2) int64 pairs ``i < j`` (sorted) of rows of the (N, words) uint64 ``phashes`` that
    differ in at most ``max_distance`` bits: every pair, XOR + popcount in row blocks.

    O(N^2 / 2) cheap operations; the reference for :func:`near_pairs` and its fallback.
    """
    h = _as_codes(phashes)
    n, words = h.shape
    blocks = []
    rows = max(1, _BLOCK_ELEMENTS // max(n * words, 1))
    for start in range(0, n, rows):
        block = h[start : start + rows]
        dist = np.bitwise_count(block[:, None, :] ^ h[None, start:, :]).sum(axis=2)
        ii, jj = np.nonzero(dist <= max_distance)
        keep = jj > ii  # columns are offset by start: j > i means a later image
        blocks.append(np.stack([ii[keep] + start, jj[keep] + start], axis=1))
    return _sorted_pairs(blocks)


def near_pairs(phashes: np.ndarray, max_distance: int,
               method: Literal["auto", "index", "bruteforce"] = "auto") -> np.ndarray:
    """(K, 2) int64 pairs ``i < j`` (sorted) of rows of the (N, words) uint64 ``phashes`` that
    differ in at most ``max_distance`` bits; exactly the pairs of :func:`near_pairs_bruteforce`.

    Multi-index hashing: the bits are cut into ``m = max(max_distance + 1, bits / 64)``
    disjoint chunks, so two codes within ``max_distance`` bits agree exactly on at least one
    chunk (pigeonhole). Only pairs sharing a chunk value (one sort per chunk) are candidates;
    each is verified on the whole code and kept only for the first chunk it agrees on, so no
    pair is found twice. Candidates go in blocks of ``_BLOCK_PAIRS``, so a huge bucket (many
    near-constant images) costs time, not memory. ``auto`` counts the candidates first and
    takes the brute force when they would cost more (a wide radius makes chunks of a few bits;
    strongly clustered codes), or when ``max_distance`` covers every bit.

    Own code, not ``faiss.IndexBinaryMultiHash`` (also exact with nhash > max_distance and
    radius max_distance + 1): faiss-cpu 1.15 is a ~60 MB native dependency bundling its own
    OpenMP and OpenBLAS next to torch's, its ``add`` reads up to 7 bytes past a code's end for
    the last chunks, it keeps a hash-set shortlist per query with no guard for huge buckets,
    and it was slower here (0.66 s on 2 threads vs 0.15 s for 100k codes at 8 bits).
    """
    h = _as_codes(phashes)
    n, bits = h.shape[0], h.shape[1] * 64
    m = max(max_distance + 1, -(-bits // 64))
    if n < 2 or m > bits or method == "bruteforce":
        return near_pairs_bruteforce(h, max_distance)
    keys = _chunk_keys(h, m)
    if method == "auto" and _CANDIDATE_COST * _n_candidates(keys) >= n * (n - 1) / 2:
        return near_pairs_bruteforce(h, max_distance)
    return _sorted_pairs([p for k in range(m) for p in _chunk_pairs(h, keys, k, max_distance)])


def _as_codes(phashes: np.ndarray) -> np.ndarray:
    """C-contiguous (N, words) uint64 (a 1-D array is one word per code)."""
    h = np.ascontiguousarray(phashes, dtype=np.uint64)
    return h[:, None] if h.ndim == 1 else h


def _sorted_pairs(blocks: list[np.ndarray]) -> np.ndarray:
    """The (K, 2) int64 concatenation of ``blocks``, sorted by first then second index."""
    pairs = np.concatenate(blocks).astype(np.int64) if blocks else np.empty((0, 2), np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def _chunk_keys(h: np.ndarray, m: int) -> np.ndarray:
    """(m, N) uint64: the value of each of ``m`` disjoint, near-equal bit chunks (<= 64 bits)."""
    bits = np.unpackbits(h.view(np.uint8), axis=1)
    edges = np.linspace(0, bits.shape[1], m + 1).round().astype(np.int64)
    keys = np.empty((m, len(h)), dtype=np.uint64)
    word = np.zeros((len(h), 8), dtype=np.uint8)
    for k in range(m):
        packed = np.packbits(bits[:, edges[k] : edges[k + 1]], axis=1)
        word[:] = 0
        word[:, : packed.shape[1]] = packed
        keys[k] = word.view(np.uint64)[:, 0]
    return keys


def _n_candidates(keys: np.ndarray) -> int:
    """Candidate pairs of all chunks: pairs of codes with equal values, summed over chunks."""
    total = 0
    for row in keys:
        counts = np.unique(row, return_counts=True)[1].astype(np.int64)
        total += int((counts * (counts - 1) // 2).sum())
    return total


def _chunk_pairs(h: np.ndarray, keys: np.ndarray, k: int, max_distance: int) -> list[np.ndarray]:
    """Pairs within ``max_distance`` whose first exactly equal chunk is chunk ``k``."""
    order = np.argsort(keys[k], kind="stable")  # stable: within a bucket, indices ascend
    sk = keys[k][order]
    ends = np.append(np.flatnonzero(sk[1:] != sk[:-1]) + 1, len(sk))
    after = np.repeat(ends, np.diff(ends, prepend=0)) - np.arange(len(sk)) - 1
    pos = np.flatnonzero(after)  # sorted positions with later positions in the same bucket
    cnt = after[pos]
    if pos.size == 0:
        return []
    csum = np.cumsum(cnt)  # blocks of <= _BLOCK_PAIRS + N candidates
    cuts = np.searchsorted(csum, np.arange(_BLOCK_PAIRS, csum[-1], _BLOCK_PAIRS), side="right")
    out = []
    for p, c in zip(np.split(pos, cuts), np.split(cnt, cuts), strict=True):
        if p.size:
            left = np.repeat(p, c)
            right = left + np.arange(left.size) - np.repeat(np.cumsum(c) - c, c) + 1
            out.append(_verify(h, keys[:k], order[left], order[right], max_distance))
    return out


def _verify(h: np.ndarray, earlier: np.ndarray, i: np.ndarray, j: np.ndarray,
            max_distance: int) -> np.ndarray:
    """(K, 2) candidates ``(i, j)`` within ``max_distance`` that agree on none of the
    ``earlier`` chunk keys (those pairs were kept for an earlier chunk)."""
    near = np.bitwise_count(h[i] ^ h[j]).sum(axis=1) <= max_distance
    i, j = i[near], j[near]
    if len(earlier):
        first = ~(earlier[:, i] == earlier[:, j]).any(axis=0)
        i, j = i[first], j[first]
    return np.stack([i, j], axis=1)


@dataclass(frozen=True)
class DuplicateGroups:
    """Component id per image and what the duplicate search found."""

    labels: np.ndarray
    exact_labels: np.ndarray
    n_exact_pairs: int
    n_near_pairs: int


def find_duplicates(prints: list[Fingerprint], max_distance: int | None) -> DuplicateGroups:
    """Group images linked by exact (and, unless ``max_distance`` is None, near) duplicates.

    The near search runs on the distinct perceptual hashes only; images sharing a hash are
    linked to its first image, so a thousand identical hashes cost a thousand edges, not half
    a million pairs. ``n_near_pairs`` still counts image pairs (not exact duplicates of each
    other) within ``max_distance``, as a pairwise search would.
    """
    n = len(prints)
    exact = np.asarray(exact_pairs(prints), dtype=np.int64).reshape(-1, 2)
    exact_labels = components(n, exact)
    if max_distance is None or n < 2:
        return DuplicateGroups(exact_labels, exact_labels, len(exact), 0)
    codes, first, code_of = np.unique(hash_matrix([p.phash for p in prints]), axis=0,
                                      return_index=True, return_inverse=True)
    code_of = code_of.reshape(-1)
    near = near_pairs(codes, max_distance)  # pairs of distinct hashes
    edges = np.concatenate([exact, np.stack([first[code_of], np.arange(n)], axis=1), first[near]])
    n_near = _near_pair_count(code_of, exact_labels, near)
    return DuplicateGroups(components(n, edges), exact_labels, len(exact), n_near)


def _near_pair_count(code_of: np.ndarray, exact_labels: np.ndarray, near: np.ndarray) -> int:
    """Image pairs with equal hashes or hashes in ``near`` (pairs of distinct hash ids) that are
    not in one exact-duplicate group, counted without listing them."""
    per_code = np.bincount(code_of).astype(np.int64)
    cells, counts = np.unique(np.stack([code_of, exact_labels], axis=1), axis=0,
                              return_counts=True)
    counts = counts.astype(np.int64)
    same_hash = (per_code * (per_code - 1) // 2).sum() - (counts * (counts - 1) // 2).sum()
    if len(near) == 0:
        return int(same_hash)
    table = csr_array((counts, (cells[:, 0], cells[:, 1])),
                      shape=(len(per_code), int(exact_labels.max()) + 1))
    a, b = near[:, 0], near[:, 1]
    shared = table[a].multiply(table[b]).sum()  # pairs of one exact group across two hashes
    return int(same_hash + (per_code[a] * per_code[b]).sum() - shared)


def merge_groups(*labelings: np.ndarray) -> np.ndarray:
    """Connected components of the union of several labelings (same length, ids per labeling)."""
    n = len(labelings[0])
    edges = []
    for lab in labelings:  # link every element to the first element of its group
        _, first, inverse = np.unique(np.asarray(lab), return_index=True, return_inverse=True)
        edges.append(np.stack([first[inverse], np.arange(n)], axis=1))
    return components(n, np.concatenate(edges))


def group_summary(labels: np.ndarray) -> tuple[int, int]:
    """(number of groups with more than one image, images in those groups)."""
    sizes = np.bincount(np.asarray(labels, dtype=np.int64))
    multi = sizes[sizes > 1]
    return int(multi.size), int(multi.sum())
