"""imgsearch: semantic image search for photo libraries.

    from imgsearch import Library
    lib = Library.open("~/.local/share/imgsearch/library")
    for hit in lib.search_text("a dog on the beach", k=5):
        print(hit.rank, hit.score, hit.path)

The names below are the public API: the CLI uses these and nothing deeper (an import contract
holds it), so a web app or a script can do everything the CLI does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    "Library": "imgsearch.library", "upgrade": "imgsearch.library",
    "ModelSpec": "imgsearch.config", "IndexSettings": "imgsearch.config", "CrawlSettings": "imgsearch.config",
    "SearchOptions": "imgsearch.config", "Filters": "imgsearch.filters", "DupOptions": "imgsearch.config",
    "ImgSearchError": "imgsearch.errors", "UsageError": "imgsearch.errors", "NotFoundError": "imgsearch.errors",
    "Term": "imgsearch.search.query", "parse_query": "imgsearch.search.query", "feedback_terms": "imgsearch.search.query",
    "FILTERS": "imgsearch.filters", "split_filters": "imgsearch.filters", "SearchResult": "imgsearch.search.result",
    "timestamp": "imgsearch.search.result", "VideoSampling": "imgsearch.config",
    "export_results": "imgsearch.search.export", "thumbnail_jpeg": "imgsearch.images.decode",
    "check_roots": "indexer.pipeline", "parse_duration": "imgsearch.dups.options",
    "load_encoder": "imgsearch.models.encoder", "classify": "imgsearch.models.zeroshot",
    "parse_labels": "imgsearch.models.zeroshot", "check_templates": "imgsearch.models.zeroshot",
    "evaluate_folder": "imgsearch.models.evaluation", "read_pairs": "imgsearch.models.train_data",
    "TrainSettings": "imgsearch.models.training", "train": "imgsearch.models.training",
    "export_model": "imgsearch.models.export", "diagnose": "imgsearch.doctor", "ForgetReport": "imgsearch.library",
}
__all__ = ["CrawlSettings", "DupOptions", "FILTERS", "Filters", "ForgetReport", "ImgSearchError", "IndexSettings", "Library",
           "ModelSpec", "NotFoundError", "SearchOptions", "SearchResult", "Term", "TrainSettings", "UsageError",
           "VideoSampling", "check_roots", "check_templates", "classify", "diagnose", "evaluate_folder",
           "export_model", "export_results", "feedback_terms", "load_encoder", "parse_duration", "parse_labels",
           "parse_query", "read_pairs", "split_filters", "thumbnail_jpeg", "timestamp", "train", "upgrade"]

if TYPE_CHECKING:
    from imgsearch.config import CrawlSettings, DupOptions, IndexSettings, ModelSpec, SearchOptions, VideoSampling
    from imgsearch.doctor import diagnose
    from imgsearch.dups.options import parse_duration
    from imgsearch.errors import ImgSearchError, NotFoundError, UsageError
    from imgsearch.filters import FILTERS, Filters, split_filters
    from imgsearch.images.decode import thumbnail_jpeg
    from imgsearch.library import ForgetReport, Library, upgrade
    from imgsearch.models.encoder import load_encoder
    from imgsearch.models.evaluation import evaluate_folder
    from imgsearch.models.export import export_model
    from imgsearch.models.train_data import read_pairs
    from imgsearch.models.training import TrainSettings, train
    from imgsearch.models.zeroshot import check_templates, classify, parse_labels
    from imgsearch.search.export import export_results
    from imgsearch.search.query import Term, feedback_terms, parse_query
    from imgsearch.search.result import SearchResult, timestamp
    from indexer.pipeline import check_roots


def __getattr__(name: str) -> object:
    # Lazy: decode workers import imgsearch.images and must not pay for SQLAlchemy, torch or FAISS.
    if name not in _LAZY:
        raise AttributeError(f"module 'imgsearch' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
