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


def exact_top_k(ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, k: int, block: int = 200_000) -> np.ndarray:
    """The true top-k ids by inner product, blocked over queries and vectors (memory stays bounded, and `vectors`
    may be a memory map of fp16 rows larger than RAM)."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(vectors), block):
        chunk = np.asarray(vectors[start:start + block], dtype=np.float32)
        for q0 in range(0, len(queries), 64):
            scores = queries[q0:q0 + 64] @ chunk.T
            all_s = np.concatenate([best_s[q0:q0 + 64], scores], axis=1)
            all_i = np.concatenate([best_i[q0:q0 + 64], np.broadcast_to(ids[start:start + block], scores.shape)], axis=1)
            top = np.argpartition(-all_s, min(k, all_s.shape[1] - 1) - 1, axis=1)[:, :k]
            best_s[q0:q0 + 64] = np.take_along_axis(all_s, top, axis=1)
            best_i[q0:q0 + 64] = np.take_along_axis(all_i, top, axis=1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, axis=1)


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
