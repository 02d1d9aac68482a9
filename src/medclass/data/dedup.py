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

Duplicate pairs are joined into groups (connected components, scipy.sparse.csgraph), so a chain
a~b~c puts all three in one group.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

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
    exact_labels = components(n, exact)
    near: list[tuple[int, int]] = []
    if max_distance is not None and n > 1:
        hashes = hash_matrix([p.phash for p in prints])
        near = [(a, b) for a, b in near_pairs(hashes, max_distance)
                if exact_labels[a] != exact_labels[b]]  # not already an exact duplicate
    return DuplicateGroups(components(n, exact + near), exact_labels, len(exact), len(near))


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
