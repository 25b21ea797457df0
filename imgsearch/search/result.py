"""A search hit: plain data, importable without numpy or FAISS (the CLI asking a running server needs no more)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SearchResult:
    """One hit: 1-based rank, cosine similarity, path, and the image id in the library; for a video, the time of
    its best-matching frame."""

    rank: int
    score: float
    path: str
    id: int
    time_ms: int | None = None

    @property
    def at(self) -> str | None:
        """The matching frame's time as a video player shows it (0:42, 1:02:03); None for a still image."""
        return None if self.time_ms is None else timestamp(self.time_ms)


def timestamp(ms: int) -> str:
    """0:42, 12:03, 1:02:03."""
    s = ms // 1000
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
