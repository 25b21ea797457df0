"""Candidate pairs from k-nearest-neighbour searches (vectors and hashes, never all pairs), scored exactly."""

from __future__ import annotations

from dataclasses import dataclass

from collections.abc import Callable

import faiss
import numpy as np

from imgsearch.vectors.params import nlist_for
from imgsearch.dups.hashing import hash_distances
from imgsearch.images.fingerprint import COARSE_BYTES, TRANSFORMS

BINARY_EXACT_MAX = 20_000  # hashes searched exhaustively up to here, with HNSW beyond


VECTOR_EXACT_MAX = 20_000  # vectors searched exhaustively up to here, with IVF (exact distances) beyond


@dataclass(frozen=True)
class Pair:
    """Exact evidence that two images (a < b, image ids) may be copies."""

    a: int
    b: int
    cosine: float
    hamming: int | None = None  # coarse pHash distance (of 64 bits); None: no hash for one of them
    transform: int | None = None  # the flip/rotation taking a to b (index into TRANSFORMS)
    fine: int | None = None  # fine pHash distance (of 256 bits) under that transform
    crop: int | None = None  # fine distance between an inner crop of one and the other (a trimmed copy)
    exact: bool = False  # byte-identical
    frames: tuple[int, int] | None = None  # videos: (key frames of the shorter that match the other's, of how many)


def _row_pairs(owners: np.ndarray, found: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """(m, 2) array of (owner row, found row) where keep, without self-pairs or misses."""
    keep = keep & (found >= 0) & (found != owners[:, None])
    return np.stack([np.broadcast_to(owners[:, None], found.shape)[keep], found[keep]], axis=1).astype(np.int64)


NO_PAIRS = np.zeros((0, 2), dtype=np.int64)


QUERY_CHUNK = 2048  # rows searched per call: progress moves, memory stays bounded


def vector_neighbours(vectors: np.ndarray, rows: np.ndarray, k: int,
                      advance: Callable[[int], None] = lambda n: None) -> np.ndarray:
    """(row, neighbour row) pairs, (m, 2), for the k nearest neighbours of `rows` among all vectors.

    Exhaustive for small sets, else an IVF index with flat (exact) storage and a generous nprobe: the
    search is approximate in which lists it visits, never in the distances it returns. `advance` is told
    how many rows each step searched.
    """
    n, dim = vectors.shape
    if n < 2 or not len(rows):
        return NO_PAIRS
    k = min(k + 1, n)
    if n <= VECTOR_EXACT_MAX:
        index: faiss.Index = faiss.IndexFlatIP(dim)
        index.add(vectors)
    else:
        nlist = nlist_for(n)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, size=min(n, 64 * nlist), replace=False)
        index.train(vectors[np.sort(sample)])
        index.add(vectors)
        index.nprobe = max(8, nlist // 32)
    rows = np.asarray(rows, dtype=np.int64)
    parts = []
    for lo in range(0, len(rows), QUERY_CHUNK):
        chunk = rows[lo:lo + QUERY_CHUNK]
        _, found = index.search(np.ascontiguousarray(vectors[chunk]), k)
        parts.append(_row_pairs(chunk, found, np.ones(found.shape, dtype=bool)))
        advance(len(chunk))
    return np.concatenate(parts)


def hash_neighbours(codes: np.ndarray, rows: np.ndarray, k: int, max_hamming: int,
                    advance: Callable[[int], None] = lambda n: None) -> np.ndarray:
    """(row, neighbour row) pairs, (m, 2), within max_hamming of any flip/rotation of `rows` (FAISS binary index);
    `advance` is told how many rows each step searched."""
    n = len(codes)
    if n < 2 or not len(rows):
        return NO_PAIRS
    base = np.ascontiguousarray(codes[:, 0, :COARSE_BYTES])
    bits = COARSE_BYTES * 8
    index = faiss.IndexBinaryFlat(bits) if n <= BINARY_EXACT_MAX else faiss.IndexBinaryHNSW(bits, 32)
    if isinstance(index, faiss.IndexBinaryHNSW):
        index.hnsw.efConstruction = 64
        index.hnsw.efSearch = 128
    index.add(base)
    rows = np.asarray(rows, dtype=np.int64)
    parts = []
    for lo in range(0, len(rows), QUERY_CHUNK):
        chunk = rows[lo:lo + QUERY_CHUNK]
        queries = np.ascontiguousarray(codes[chunk][:, :len(TRANSFORMS), :COARSE_BYTES].reshape(-1, COARSE_BYTES))
        dist, found = index.search(queries, min(k + 1, n))
        parts.append(_row_pairs(np.repeat(chunk, len(TRANSFORMS)), found, dist <= max_hamming))
        advance(len(chunk))
    return np.concatenate(parts)


def score_pairs(ids: np.ndarray, vectors: np.ndarray, codes: np.ndarray | None, has_code: np.ndarray | None,
                row_pairs: np.ndarray, min_cosine: float = -1.0, max_hamming: int = -1,
                hashed_min_cosine: float = -1.0, chunk: int = 65_536) -> list[Pair]:
    """Exact evidence for candidate (row, row) pairs: the stored vectors' cosine and the pHash distances
    over the 8 flips/rotations. Kept: pairs at `min_cosine` or above, and pairs within `max_hamming`
    coarse bits at `hashed_min_cosine` or above. Vectorised, in chunks."""
    rows = np.asarray(row_pairs, dtype=np.int64).reshape(-1, 2).copy()
    if not len(rows):
        return []
    swap = ids[rows[:, 0]] > ids[rows[:, 1]]
    rows[swap] = rows[swap][:, ::-1]
    rows = np.unique(rows, axis=0)
    out: list[Pair] = []
    for lo in range(0, len(rows), chunk):
        r, s = rows[lo:lo + chunk, 0], rows[lo:lo + chunk, 1]
        cos = np.einsum("ij,ij->i", vectors[r], vectors[s])
        coarse = tr = fine = crop = None
        keep = cos >= min_cosine
        if codes is not None and has_code is not None and len(r):
            coarse, tr, fine, crop = hash_distances(codes[r], codes[s])
            coarse = np.where(has_code[r] & has_code[s], coarse, -1)
            keep |= (coarse >= 0) & (coarse <= max_hamming) & (cos >= hashed_min_cosine)
            coarse, tr, fine, crop = coarse[keep], tr[keep], fine[keep], crop[keep]
        r, s, cos = r[keep], s[keep], cos[keep]
        for n in range(len(r)):
            if coarse is None or tr is None or fine is None or crop is None or coarse[n] < 0:
                out.append(Pair(int(ids[r[n]]), int(ids[s[n]]), float(cos[n])))
            else:
                out.append(Pair(int(ids[r[n]]), int(ids[s[n]]), float(cos[n]), int(coarse[n]), int(tr[n]),
                                int(fine[n]), int(crop[n])))
    return out
