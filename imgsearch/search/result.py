"""A search hit: plain data, importable without numpy or FAISS (the CLI asking a running server needs no more)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SearchResult:
    """One hit: 1-based rank, cosine similarity, path, and the image id in the library."""

    rank: int
    score: float
    path: str
    id: int

    def as_dict(self) -> dict:
        return asdict(self)
