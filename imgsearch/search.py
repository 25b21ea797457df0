"""Query layer: text or image -> vector -> FAISS hits -> ranked results with paths."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from imgsearch.errors import UsageError
from imgsearch.vector_index import VectorIndex

MAX_K = 10_000


@dataclass(frozen=True)
class SearchResult:
    """One hit: 1-based rank, cosine similarity, path, and the image id in the library."""

    rank: int
    score: float
    path: str
    id: int

    def as_dict(self) -> dict:
        return asdict(self)


def check_text(query: str) -> str:
    """The query stripped; an empty one is a usage error."""
    text = (query or "").strip()
    if not text:
        raise UsageError("empty query: give some words to search for, e.g. imgsearch search \"a dog on the beach\"")
    return text


def check_k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise UsageError(f"--top must be between 1 and {MAX_K}, got {k}")
    return k


def rank(index: VectorIndex, query: np.ndarray, k: int, paths_for: Callable[[Sequence[int]], dict[int, str]],
         exclude: Collection[int] = ()) -> list[SearchResult]:
    """Top-k results for one query vector, skipping excluded ids and ids the DB no longer has."""
    scores, ids = index.search(query, k + len(exclude))
    hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0 and int(i) not in exclude]
    paths = paths_for([i for i, _ in hits])
    results = [(i, s) for i, s in hits if i in paths][:k]
    return [SearchResult(rank=n, score=s, path=paths[i], id=i) for n, (i, s) in enumerate(results, 1)]
