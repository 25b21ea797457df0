"""imgsearch: semantic image search for photo libraries.

    from imgsearch import Library
    lib = Library.open("~/.local/share/imgsearch/library")
    for hit in lib.search_text("a dog on the beach", k=5):
        print(hit.rank, hit.score, hit.path)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Library", "SearchResult", "ModelSpec", "IndexSettings", "SearchOptions", "Filters", "parse_query",
           "ImgSearchError"]

if TYPE_CHECKING:
    from imgsearch.config import Filters, IndexSettings, ModelSpec, SearchOptions
    from imgsearch.errors import ImgSearchError
    from imgsearch.library import Library
    from imgsearch.search.query import parse_query
    from imgsearch.search.ranking import SearchResult


_LAZY = {"Library": "imgsearch.library", "SearchResult": "imgsearch.search.ranking", "ModelSpec": "imgsearch.config",
         "IndexSettings": "imgsearch.config", "SearchOptions": "imgsearch.config", "Filters": "imgsearch.config",
         "parse_query": "imgsearch.search.query", "ImgSearchError": "imgsearch.errors"}


def __getattr__(name: str) -> object:
    # Lazy: decode workers import imgsearch.images.decode and must not pay for SQLAlchemy/alembic.
    if name not in _LAZY:
        raise AttributeError(f"module 'imgsearch' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
