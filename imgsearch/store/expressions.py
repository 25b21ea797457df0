"""SQL building blocks the query modules share: chunks under the bound-parameter limit, path prefixes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

SQL_CHUNK = 900  # stay under SQLite's bound-parameter limit


def chunks(items: Sequence, n: int = SQL_CHUNK) -> Iterable[Sequence]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def under(column, folder: str):  # noqa: ANN001, ANN201 (SQLAlchemy column expression)
    """SQL condition: `column` is a path inside `folder` (an index range scan, no LIKE escaping)."""
    prefix = folder.rstrip("/") + "/"
    return (column >= prefix) & (column < prefix[:-1] + chr(ord("/") + 1))
