"""imgsearch: semantic image search for photo libraries.

    from imgsearch import Library
    lib = Library.open("~/.local/share/imgsearch/library")
    for hit in lib.search_text("a dog on the beach", k=5):
        print(hit.rank, hit.score, hit.path)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Library", "SearchResult", "ModelSpec", "IndexSettings", "ImgSearchError"]

if TYPE_CHECKING:
    from imgsearch.config import IndexSettings, ModelSpec
    from imgsearch.errors import ImgSearchError
    from imgsearch.library import Library
    from imgsearch.search import SearchResult


def __getattr__(name: str) -> object:
    # Lazy: decode workers import imgsearch.images and must not pay for SQLAlchemy/alembic.
    from imgsearch import config, errors, library, search

    table = {"Library": library.Library, "SearchResult": search.SearchResult, "ModelSpec": config.ModelSpec,
             "IndexSettings": config.IndexSettings, "ImgSearchError": errors.ImgSearchError}
    if name in table:
        return table[name]
    raise AttributeError(f"module 'imgsearch' has no attribute {name!r}")
