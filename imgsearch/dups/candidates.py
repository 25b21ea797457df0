"""Candidate pairs from k-nearest-neighbour searches (vectors and hashes, never all pairs), scored exactly."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields

import faiss
import numpy as np

from imgsearch.vectors.params import nlist_for
from imgsearch.dups.hashing import hash_distances
from imgsearch.images.fingerprint import COARSE_BYTES, ROWS, TRANSFORMS

BINARY_EXACT_MAX = 20_000  # hashes searched exhaustively up to here, with a binary IVF beyond
BINARY_NPROBE = 16  # lists of the binary IVF visited per query: at 100k, 10x faster than an HNSW (efSearch 128) and
# as many pairs within the cache's bits, every near copy among them (bench/dups_eval.py)
# Inner-crop queries (a trimmed copy's whole picture is within a few bits of one of its original's inner crops: 10 at
# most on the labelled set, against up to 32 between the whole pictures): these many neighbours within these bits,
# in these many lists. Tight, as 14 queries a photo are; a photo's own crops are near it whole, so looser bars send
# every photo's look-alikes to the (slower) trimmed-copy check.
CROP_NEIGHBOURS, CROP_HAMMING, CROP_NPROBE = 4, 12, 4


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


NONE = -1  # in a PairTable's integer columns: no value (no hash for one of the two, not a video pair)


@dataclass(frozen=True)
class PairTable:
    """Many pairs as columns (one NumPy array per field of Pair, NONE for None): millions of candidate pairs are
    scored, cached and tiered without one Python object each."""

    a: np.ndarray  # int64 image ids, a < b
    b: np.ndarray
    cosine: np.ndarray  # float64
    hamming: np.ndarray  # int16, NONE: no hash for one of them
    transform: np.ndarray  # int16
    fine: np.ndarray  # int16
    crop: np.ndarray  # int16
    exact: np.ndarray  # bool
    matched: np.ndarray  # int32 videos: key frames of the shorter that match the other's (NONE: not videos)
    frames: np.ndarray  # int32 ...of how many

    def __len__(self) -> int:
        return len(self.a)

    @classmethod
    def empty(cls) -> PairTable:
        return cls.of([])

    @classmethod
    def of(cls, pairs: Iterable[Pair]) -> PairTable:
        """The table of a few Pair objects (exact copies, videos, a test's pairs)."""
        pairs = list(pairs)

        def column(get, dtype) -> np.ndarray:
            return np.fromiter((get(p) for p in pairs), dtype=dtype, count=len(pairs))

        def known(v: int | None) -> int:
            return NONE if v is None else v

        return cls(column(lambda p: p.a, np.int64), column(lambda p: p.b, np.int64),
                   column(lambda p: p.cosine, np.float64), column(lambda p: known(p.hamming), np.int16),
                   column(lambda p: known(p.transform), np.int16), column(lambda p: known(p.fine), np.int16),
                   column(lambda p: known(p.crop), np.int16), column(lambda p: p.exact, bool),
                   column(lambda p: p.frames[0] if p.frames else NONE, np.int32),
                   column(lambda p: p.frames[1] if p.frames else NONE, np.int32))

    @classmethod
    def concat(cls, tables: Sequence[PairTable]) -> PairTable:
        return cls(*(np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(cls)))

    def take(self, rows: np.ndarray) -> PairTable:
        """The rows selected by a boolean mask or an index array."""
        return PairTable(*(getattr(self, f.name)[rows] for f in fields(self)))

    def columns(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def as_table(pairs: Sequence[Pair] | PairTable) -> PairTable:
    return pairs if isinstance(pairs, PairTable) else PairTable.of(pairs)


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
                    advance: Callable[[int], None] = lambda n: None, crops: bool = False) -> np.ndarray:
    """(row, neighbour row) pairs, (m, 2), within max_hamming of any flip/rotation of `rows` (FAISS binary index);
    with `crops`, also of any of their inner crops (a trimmed copy's whole picture is one of its original's inner
    crops: the whole pictures are far apart, up to 32 bits, their crop and whole picture a few bits). `advance` is
    told how many rows each step searched."""
    n = len(codes)
    if n < 2 or not len(rows):
        return NO_PAIRS
    base = np.ascontiguousarray(codes[:, 0, :COARSE_BYTES])
    bits = COARSE_BYTES * 8
    ivf = None
    if n <= BINARY_EXACT_MAX:
        index: faiss.IndexBinary = faiss.IndexBinaryFlat(bits)
    else:  # lists by k-means over the codes: a near copy's code sits in its original's list or a close one
        nlist = nlist_for(n)
        ivf = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, nlist)
        sample = np.random.default_rng(0).choice(n, size=min(n, 64 * nlist), replace=False)
        ivf.train(base[np.sort(sample)])
        index = ivf
    index.add(base)
    rows = np.asarray(rows, dtype=np.int64)
    passes = [(slice(0, len(TRANSFORMS)), BINARY_NPROBE, k, max_hamming)]
    if crops:
        passes.append((slice(len(TRANSFORMS), ROWS), CROP_NPROBE, CROP_NEIGHBOURS, min(max_hamming, CROP_HAMMING)))
    parts = []
    for lo in range(0, len(rows), QUERY_CHUNK):
        chunk = rows[lo:lo + QUERY_CHUNK]
        for which, nprobe, neighbours, bits_within in passes:
            if ivf is not None:
                ivf.nprobe = min(ivf.nlist, nprobe)
            queries = np.ascontiguousarray(codes[chunk][:, which, :COARSE_BYTES])
            per_row = queries.shape[1]
            dist, found = index.search(queries.reshape(-1, COARSE_BYTES), min(neighbours + 1, n))
            parts.append(_row_pairs(np.repeat(chunk, per_row), found, dist <= bits_within))
        advance(len(chunk))
    return np.concatenate(parts)


def score_pairs(ids: np.ndarray, vectors: np.ndarray, codes: np.ndarray | None, has_code: np.ndarray | None,
                row_pairs: np.ndarray, min_cosine: float = -1.0, max_hamming: int = -1,
                hashed_min_cosine: float = -1.0, chunk: int = 65_536, max_crop: int = -1) -> PairTable:
    """Exact evidence for candidate (row, row) pairs: the stored vectors' cosine and the pHash distances
    over the 8 flips/rotations and the inner crops. Kept: pairs at `min_cosine` or above, and pairs within
    `max_hamming` coarse bits or `max_crop` crop bits (fine, of 256) at `hashed_min_cosine` or above. Vectorised,
    in chunks."""
    rows = np.asarray(row_pairs, dtype=np.int64).reshape(-1, 2).copy()
    if not len(rows):
        return PairTable.empty()
    swap = ids[rows[:, 0]] > ids[rows[:, 1]]
    rows[swap] = rows[swap][:, ::-1]
    keys = np.unique(rows[:, 0] * len(ids) + rows[:, 1])  # one int64 per pair: 8x faster than unique rows
    rows = np.stack([keys // len(ids), keys % len(ids)], axis=1)
    parts = []
    for lo in range(0, len(rows), chunk):
        r, s = rows[lo:lo + chunk, 0], rows[lo:lo + chunk, 1]
        cos = np.einsum("ij,ij->i", vectors[r], vectors[s]).astype(np.float64)
        keep = cos >= min_cosine
        none = np.full(len(r), NONE, dtype=np.int16)
        coarse = tr = fine = crop = none
        if codes is not None and has_code is not None and len(r):
            coded = has_code[r] & has_code[s]
            distances = hash_distances(codes[r], codes[s])
            coarse, tr, fine, crop = (np.where(coded, d, NONE).astype(np.int16) for d in distances)
            keep |= coded & ((coarse <= max_hamming) | ((crop >= 0) & (crop <= max_crop))) & (cos >= hashed_min_cosine)
        n = int(keep.sum())
        parts.append(PairTable(ids[r[keep]], ids[s[keep]], cos[keep], coarse[keep], tr[keep], fine[keep], crop[keep],
                               np.zeros(n, dtype=bool), np.full(n, NONE, dtype=np.int32),
                               np.full(n, NONE, dtype=np.int32)))
    return PairTable.concat(parts)
