"""The ImgSearchError hierarchy: every failure a user can meet, with a message naming the fix."""

from __future__ import annotations


class ImgSearchError(Exception):
    """Base error; `message` is what the CLI prints after 'Error: '; `exit_code` is what it exits with."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(ImgSearchError):
    """The user asked for something malformed (empty query, bad option value)."""

    exit_code = 2


class LibraryNotFoundError(ImgSearchError):
    """No library exists at the given directory."""


class NotALibraryError(ImgSearchError):
    """The directory exists but is not an imgsearch library (and is not empty)."""


class NothingIndexedError(ImgSearchError):
    """The library holds no vectors for the requested model yet."""


class SchemaOutdatedError(ImgSearchError):
    """The library's database is older than this version of imgsearch."""


class SchemaTooNewError(ImgSearchError):
    """The library's database was written by a newer imgsearch."""


class DatabaseError(ImgSearchError):
    """The SQLite file is corrupt or unreadable."""


class ModelLoadError(ImgSearchError):
    """A CLIP model could not be loaded (unknown name, missing weights, offline)."""


class ModelMismatchError(ImgSearchError):
    """The model named for a search is not the one the library's vectors were made with."""


class ImageError(ImgSearchError):
    """One image could not be read or decoded; indexing records it as skipped with this reason."""
