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

Duplicate pairs are joined into groups by union-find (connected components), so a chain
a~b~c puts all three in one group.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image

PHASH_SIZE = 16  # imagehash hash_size: PHASH_SIZE**2 = 256 bits
PHASH_BITS = PHASH_SIZE**2
# Words of the pairwise Hamming block: keeps the temporary (rows x N x 4) arrays near 64 MB.
_BLOCK_ELEMENTS = 8_000_000


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
    return np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(len(hashes), -1).view(np.uint64)


class UnionFind:
    """Disjoint sets over ``0..n-1`` with path halving and union by size."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)
        self.size = np.ones(n, dtype=np.int64)

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    def union(self, a: int, b: int) -> bool:
        """Join the sets of ``a`` and ``b``; True when they were separate."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return True

    def labels(self) -> np.ndarray:
        """Component id per element: 0, 1, ... in order of each component's first element."""
        roots = np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)
        _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
        order = np.argsort(np.argsort(first, kind="stable"), kind="stable")
        return order[inverse].astype(np.int64)


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


def near_pairs(phashes: np.ndarray, max_distance: int) -> list[tuple[int, int]]:
    """Pairs ``i < j`` of rows of the (N, words) uint64 ``phashes`` that differ in at most
    ``max_distance`` bits.

    Brute force over the upper triangle in row blocks (XOR + popcount), O(N^2 / 2) cheap
    operations.
    """
    h = np.asarray(phashes, dtype=np.uint64)
    if h.ndim == 1:
        h = h[:, None]
    n, words = h.shape
    pairs: list[tuple[int, int]] = []
    rows = max(1, _BLOCK_ELEMENTS // max(n * words, 1))
    for start in range(0, n, rows):
        block = h[start : start + rows]
        dist = np.bitwise_count(block[:, None, :] ^ h[None, start:, :]).sum(axis=2)
        ii, jj = np.nonzero(dist <= max_distance)
        keep = jj > ii  # columns are offset by start: j > i means a later image
        pairs.extend(zip((ii[keep] + start).tolist(), (jj[keep] + start).tolist(), strict=True))
    return pairs


@dataclass(frozen=True)
class DuplicateGroups:
    """Component id per image and what the duplicate search found."""

    labels: np.ndarray
    exact_labels: np.ndarray
    n_exact_pairs: int
    n_near_pairs: int


def find_duplicates(prints: list[Fingerprint], max_distance: int | None) -> DuplicateGroups:
    """Group images linked by exact (and, unless ``max_distance`` is None, near) duplicates."""
    n = len(prints)
    exact = exact_pairs(prints)
    uf = UnionFind(n)
    for a, b in exact:
        uf.union(a, b)
    exact_labels = uf.labels()
    n_near = 0
    if max_distance is not None and n > 1:
        hashes = hash_matrix([p.phash for p in prints])
        for a, b in near_pairs(hashes, max_distance):
            if exact_labels[a] != exact_labels[b]:  # not already an exact duplicate
                n_near += 1
                uf.union(a, b)
    return DuplicateGroups(uf.labels(), exact_labels, len(exact), n_near)


def merge_groups(*labelings: np.ndarray) -> np.ndarray:
    """Connected components of the union of several labelings (same length, ids per labeling)."""
    n = len(labelings[0])
    uf = UnionFind(n)
    for lab in labelings:
        first: dict[int, int] = {}
        for i, g in enumerate(np.asarray(lab).tolist()):
            if g in first:
                uf.union(first[g], i)
            else:
                first[g] = i
    return uf.labels()


def group_summary(labels: np.ndarray) -> tuple[int, int]:
    """(number of groups with more than one image, images in those groups)."""
    sizes = np.bincount(np.asarray(labels, dtype=np.int64))
    multi = sizes[sizes > 1]
    return int(multi.size), int(multi.sum())
