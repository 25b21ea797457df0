"""Render results for a terminal or a pipe: table, JSON lines, bare paths (NUL-separated with -0)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from imgsearch.search import SearchResult


def table(results: Sequence[SearchResult]) -> str:
    """Aligned rank / score / path columns."""
    if not results:
        return ""
    width = len(str(results[-1].rank))
    lines = [f"{'#':>{width}}  score   path"]
    lines += [f"{r.rank:>{width}}  {r.score:.4f}  {r.path}" for r in results]
    return "\n".join(lines) + "\n"


def json_lines(results: Sequence[SearchResult]) -> str:
    """One JSON object per result: path, score, rank, id."""
    return "".join(json.dumps({"path": r.path, "score": round(r.score, 6), "rank": r.rank, "id": r.id},
                              ensure_ascii=False) + "\n" for r in results)


def paths(results: Sequence[SearchResult], nul: bool = False) -> str:
    """Bare paths, one per line, or NUL-terminated for xargs -0."""
    end = "\0" if nul else "\n"
    return "".join(r.path + end for r in results)
