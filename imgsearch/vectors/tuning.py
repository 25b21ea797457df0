"""Recall of the built index against exact search, and autofaiss-style tuning of nprobe/k_factor."""

from __future__ import annotations

import numpy as np

from imgsearch.vectors.index import VectorIndex, as_float32

NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # past 256 lists an IVF scan costs what it saves
K_FACTORS = (10, 40, 100)  # re-ranking 1,000 fp16 candidates costs ~1 ms: depth is cheap recall


def sample_queries(vectors: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Midpoints of random pairs of library vectors: near the data, never equal to one of them."""
    rng = np.random.default_rng(seed)
    a = vectors[rng.integers(0, len(vectors), n)]
    b = vectors[rng.integers(0, len(vectors), n)]
    q = a + b
    return as_float32(q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12))


def exact_top_k(ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The true top-k ids by inner product (blocked, so memory stays bounded)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 64):
        scores = queries[start:start + 64] @ vectors.T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
        out[start:start + 64] = ids[np.take_along_axis(top, order, axis=1)]
    return out


def recall_at_k(index: VectorIndex, truth: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    """Mean fraction of the true top-k that the index returns in its top-k."""
    _, found = index.search(queries, k)
    hits = sum(len(set(t[:k]) & set(f[:k])) for t, f in zip(truth, found))
    return hits / (k * len(queries))


def tune(index: VectorIndex, ids: np.ndarray, vectors: np.ndarray, target: float = 0.95,
         sample: int = 200, k: int = 10) -> float:
    """Set the cheapest (nprobe, k_factor) reaching `target` recall@k; returns the recall measured."""
    if index.kind == "exact":
        return 1.0
    queries = sample_queries(vectors, sample)
    truth = exact_top_k(ids, vectors, queries, k)
    best = 0.0
    for k_factor in K_FACTORS:
        for nprobe in NPROBES:
            if nprobe > index.nlist:
                break
            index.params.update(nprobe=nprobe, k_factor=k_factor)
            best = recall_at_k(index, truth, queries, k)
            if best >= target:
                return best
    return best  # the most thorough setting tried; the caller records it
