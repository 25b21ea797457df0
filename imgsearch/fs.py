"""File-system rules written once: which folder a path lies in, and how a file is replaced atomically."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import threading
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import IO


def is_inside(path: str, folder: str) -> bool:
    """Whether `path` is `folder` itself or lies below it (text only: `/photos-2` is not inside `/photos`)."""
    folder = folder.rstrip("/") or "/"
    return path == folder or path.startswith(folder if folder == "/" else folder + "/")


def innermost(path: str, folders: Sequence[str]) -> str | None:
    """The deepest of `folders` that holds `path`, or None."""
    holding = [f for f in folders if is_inside(path, f)]
    return max(holding, key=len) if holding else None


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Write `path` through a temporary file beside it: fsync, rename over, fsync the folder.

    A crash at any moment leaves either the old file or the new one, never a torn one.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: some file systems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def free_path(path: Path, taken: Collection[str] = ()) -> Path:
    """`path`, or `name (2).ext`, `name (3).ext`... when it exists or is `taken`: nothing is ever overwritten."""
    def used(p: Path) -> bool:
        return os.path.lexists(p) or str(p) in taken

    if not used(path):
        return path
    n = 2
    while used(candidate := path.with_name(f"{path.stem} ({n}){path.suffix}")):
        n += 1
    return candidate


def missing_dirs(folder: Path) -> list[Path]:
    """The folders `folder.mkdir(parents=True)` would create, outermost first."""
    out = []
    while not folder.exists() and folder != folder.parent:
        out.append(folder)
        folder = folder.parent
    return out[::-1]


_c_stdout = threading.Lock()


@contextlib.contextmanager
def c_stdout_silenced() -> Iterator[None]:
    """Drop what C code prints on the process's stdout (fd 1) meanwhile: FAISS's on-disk inverted lists print notes
    with printf ("resizing ...", "IO_FLAG_ONDISK_SAME_DIR: updating ondisk filename ..."), and stdout carries
    results. Process-wide while it lasts (Python's own prints are flushed first and kept)."""
    with _c_stdout:
        sys.stdout.flush()
        try:
            saved = os.dup(1)
            devnull = os.open(os.devnull, os.O_WRONLY)
        except OSError:  # no fd 1 (a service without stdout): nothing to protect
            yield
            return
        try:
            os.dup2(devnull, 1)
            yield
        finally:
            _flush_c_streams()
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)


def _flush_c_streams() -> None:
    """fflush(NULL): what C buffered for fd 1 goes where fd 1 points now."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to call (Windows): its buffer stays
        pass


WHOLE_HASH_MAX = 64 << 20  # files up to this are hashed whole; larger ones by their size, head and tail
HASHED_ENDS = 4 << 20


def file_fingerprint(path: Path) -> dict:
    """A file's size and a blake2b of it (of its first and last 4 MB beyond WHOLE_HASH_MAX: checking a 100 GB file
    must not read it all; a torn or truncated file changes its size, garbage at either end its hash)."""
    size = path.stat().st_size
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        if size <= WHOLE_HASH_MAX:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        else:
            h.update(f.read(HASHED_ENDS))
            f.seek(size - HASHED_ENDS)
            h.update(f.read(HASHED_ENDS))
    return {"size": size, "blake2b": h.hexdigest()}
