"""The ImgSearchError tree: every failure a user can meet, with a stable code and a message naming the fix.

Messages never name a command-line flag: an error about one parameter carries its Python name in
`param`, and the text `{param}` in the message stands for it (`{param:NAME}` for another
parameter). The CLI renders them as flags (`--top`), a web layer as fields (`k`); `message`
renders them as the parameters themselves. `code` is stable and says what kind of failure it is,
so a web layer can map it to an HTTP status.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable

_PARAM = re.compile(r"\{param(?::(\w+))?\}")


def render(text: str, name_of: Callable[[str], str], param: str | None = None) -> str:
    """A message (an error's, or a report's warning) with `{param:NAME}` written as `name_of(NAME)` and `{param}`
    as `name_of(param)`."""
    return _PARAM.sub(lambda m: name_of(m.group(1) or param or ""), text)


class ImgSearchError(Exception):
    """Base error. `code`: stable kind; `exit_code`: what the CLI exits with; `param`: the parameter at fault."""

    code = "error"
    exit_code = 1

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.template = message
        self.param = param

    @property
    def message(self) -> str:
        """The message with parameters written as their Python names."""
        return self.render(lambda name: name)

    def render(self, name_of: Callable[[str], str]) -> str:
        """The message with each parameter written as `name_of(parameter)` (a flag, a form field...)."""
        return render(self.template, name_of, self.param)

    def __str__(self) -> str:
        return self.message


class UsageError(ImgSearchError):
    """The caller asked for something malformed (empty query, a value out of range, a missing folder)."""

    code = "usage"
    exit_code = 2


class NotFoundError(ImgSearchError):
    """Something named does not exist (a library, an image, an action to undo)."""

    code = "not_found"


class LibraryNotFoundError(NotFoundError):
    """No library exists at the given directory."""


class NotALibraryError(ImgSearchError):
    """The directory exists but is not an imgsearch library (and is not empty)."""

    code = "not_a_library"


class NothingIndexedError(ImgSearchError):
    """The library holds no vectors for the requested model yet."""

    code = "not_indexed"


class BusyError(ImgSearchError):
    """Another process holds what this one needs: the indexer lock, the database's write lock."""

    code = "busy"


class DiskFullError(ImgSearchError):
    """The disk (or quota) is full; what was saved before is kept."""

    code = "disk_full"


class ReadOnlyError(ImgSearchError):
    """The library cannot be written: a read-only file system or missing permissions."""

    code = "read_only"


class NetworkError(ImgSearchError):
    """A download failed: the server refused, timed out, or sent something unusable."""

    code = "network"


class CorruptError(ImgSearchError):
    """Stored data is damaged (a database that is not one, garbage inside a file)."""

    code = "corrupt"


class DatabaseError(CorruptError):
    """The library database is corrupt or unreadable."""


class DatabaseUnreachableError(DatabaseError):
    """The database server cannot be reached now (down, restarting, the network): nothing is damaged."""

    code = "db_unreachable"


class SchemaError(ImgSearchError):
    """The database's schema is not the one this version of imgsearch writes."""

    code = "schema"


class SchemaOutdatedError(SchemaError):
    """The library's database is older than this version of imgsearch."""


class SchemaTooNewError(SchemaError):
    """The library's database was written by a newer imgsearch."""


class ModelLoadError(ImgSearchError):
    """A CLIP model could not be loaded (unknown name, missing weights, offline)."""

    code = "model_unavailable"


class MissingExtraError(ImgSearchError):
    """What was asked for needs packages this install leaves out (PyTorch and open_clip: the "torch" extra; Ray;
    pyarrow); the message names the pip command."""

    code = "missing_extra"


class ClusterError(ImgSearchError):
    """A Ray cluster could not be joined, or failed a run (what was encoded before is kept)."""

    code = "cluster"


class ExportError(ImgSearchError):
    """A model could not be exported to OpenVINO or ONNX Runtime, or the export does not reproduce it (indexing
    then falls back to PyTorch with a warning)."""

    code = "export_failed"


class ModelMismatchError(ImgSearchError):
    """The model named for a search is not the one the library's vectors were made with."""

    code = "model_mismatch"


def from_os_error(exc: OSError, what: str, after: str = "") -> ImgSearchError:
    """A failed write as the error kind a caller can act on (the disk is full; the place is read-only, or not ours to
    write; anything else), saying `what` failed, why, and `after` (what happens next)."""
    kinds: dict[int, tuple[type[ImgSearchError], str]] = {
        errno.ENOSPC: (DiskFullError, "the disk is full: free some space"),
        errno.EDQUOT: (DiskFullError, "the disk quota is exhausted: free some space"),
        errno.EROFS: (ReadOnlyError, "the file system is read-only: use a folder on a writable disk"),
        errno.EACCES: (ReadOnlyError, "permission denied: make the folder writable or use another one"),
        errno.EPERM: (ReadOnlyError, "permission denied: make the folder writable or use another one"),
    }
    kind, reason = kinds.get(exc.errno or 0, (ImgSearchError, exc.strerror or str(exc)))
    return kind(f"{what}: {reason}" + (f". {after}" if after else ""))


class ImageError(ImgSearchError):
    """One image could not be read or decoded; indexing records it as skipped with this reason."""

    code = "bad_image"
