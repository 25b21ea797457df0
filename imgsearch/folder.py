"""The library folder on disk: its manifest, its creation, the one-indexer lock, and write failures
turned into errors that name the folder and the fix."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.exc import OperationalError as SAOperationalError

from imgsearch.config import DB_FILENAME, MANIFEST_FILENAME
from imgsearch.errors import (BusyError, DiskFullError, ImgSearchError, NotALibraryError, ReadOnlyError, UsageError,
                              from_os_error)
from imgsearch.fs import atomic_write
from imgsearch.store import engine as db

MANIFEST_FORMAT = 1
LOCK_FILENAME = "index.lock"
_AFTER = "Everything saved before this is kept: run the same command again once fixed."


def is_library(path: Path) -> bool:
    return (path / MANIFEST_FILENAME).is_file()


def writable(path: Path) -> bool:
    """Whether the library folder and its database file can be written (a read-only disk or permissions say no)."""
    db_path = path / DB_FILENAME
    return os.access(path, os.W_OK) and (not db_path.exists() or os.access(db_path, os.W_OK))


def read_manifest(path: Path) -> dict:
    try:
        return json.loads((path / MANIFEST_FILENAME).read_text())
    except (OSError, ValueError):
        return {}


def database(path: Path, given: str | None = None) -> str | None:
    """The database URL a library uses (None: its own SQLite file). `given` (a --db option or IMGSEARCH_DB_URL) may
    add a password to the URL the folder remembers, not point it elsewhere."""
    remembered = read_manifest(path).get("database")
    if given is None or given == remembered:
        return remembered
    if remembered is None or db.public_url(given) != remembered:
        uses = remembered or f"its own SQLite file ({path / DB_FILENAME})"
        raise UsageError(f"the library at {path} uses {uses}, not {db.public_url(given)}: to move it there, run "
                         f"`imgsearch db copy {{param:to}} {db.public_url(given)} {{param:library}} {path}`; to use that "
                         "database instead, give another library folder ({param}) or unset IMGSEARCH_DB_URL.",
                         "library")
    return given


def recover(path: Path) -> bool:
    """Finish a library whose creation was interrupted, or whose manifest was lost: the database says whether it
    is one. True when the folder is a library again; an empty database left by the interruption is removed."""
    db_path = path / DB_FILENAME
    if is_library(path) or not db_path.is_file():
        return is_library(path)
    engine = db.make_engine(db_path)
    try:
        revision = db.current_revision(engine)
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    if revision is None and not tables - {"alembic_version"}:  # created, never filled: start again
        for leftover in (db_path, *(db_path.with_name(db_path.name + s) for s in ("-wal", "-shm", "-journal"))):
            leftover.unlink(missing_ok=True)
        return False
    if revision is None:
        return False  # some other database: not ours to adopt
    write_manifest(path)
    return True


def create(path: Path, url: str | None = None) -> None:
    """Make a new library folder, its database its own SQLite file or the server database at `url` (created there
    when empty, joined when it holds an imgsearch library already); refuses a non-empty folder that is not a
    library."""
    if path.exists() and not path.is_dir():
        raise NotALibraryError(f"{path} is a file, not a library folder: give a folder path for {{param}}.",
                               param="library")
    if path.is_dir() and any(path.iterdir()):
        raise NotALibraryError(
            f"{path} is not empty and holds no imgsearch library ({MANIFEST_FILENAME} missing): "
            "give an empty or new folder for {param}.", param="library")
    engine = db.make_engine(url or path / DB_FILENAME)
    try:
        if url is None or db.current_revision(engine) is None:
            if url is not None:
                db.check_empty(engine)
            path.mkdir(parents=True, exist_ok=True)
            db.upgrade_to_head(engine)
        else:
            db.check_schema(engine)  # a library another folder (another machine) uses already: join it
            path.mkdir(parents=True, exist_ok=True)
    finally:
        engine.dispose()
    write_manifest(path, url)  # written last: a half-created library is never taken for one


def write_manifest(path: Path, url: str | None = None) -> None:
    """The manifest; a server database's URL is kept without its password (that comes from the environment)."""
    manifest = {"format": MANIFEST_FORMAT, "created_at": datetime.now().astimezone().isoformat(),
                "created_by": "imgsearch"} | ({"database": db.public_url(url)} if url else {})
    with atomic_write(path / MANIFEST_FILENAME, "w") as f:
        f.write(json.dumps(manifest, indent=2) + "\n")


def use_database(path: Path, url: str | None) -> None:
    """Point the library folder at another database (after `db copy`); None: its own SQLite file."""
    manifest = read_manifest(path) or {"format": MANIFEST_FORMAT, "created_by": "imgsearch"}
    manifest.pop("database", None)
    if url is not None and not db.is_default_sqlite(url, path / DB_FILENAME):
        manifest["database"] = db.public_url(url)
    with atomic_write(path / MANIFEST_FILENAME, "w") as f:
        f.write(json.dumps(manifest, indent=2) + "\n")


@contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """One writer (indexer, duplicate action) at a time: an exclusive flock, released by the kernel when the
    process dies, so it can never go stale."""
    fd = os.open(path / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise BusyError(f"another indexer is already running on {path} ({holder}): "
                            "wait for it to finish, or stop it.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(fd)


def writer_running(path: Path) -> bool:
    """Whether some process holds the library's writer lock now (a run that says "running" without it was killed)."""
    try:
        fd = os.open(path / LOCK_FILENAME, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's shared lock too


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Disk-full, read-only and locked-database failures become errors naming the folder and the fix.

    Work is committed batch by batch, so what was saved before the failure stays; the next run
    continues from there.
    """
    try:
        yield
    except OSError as exc:
        raise from_os_error(exc, f"cannot write to the library at {path}", _AFTER) from exc
    except SAOperationalError as exc:
        text = str(exc.orig).lower()
        kind: type[ImgSearchError]
        if "full" in text:
            kind, fix = DiskFullError, "the disk is full: free some space"
        elif "readonly" in text or "read-only" in text:
            kind, fix = ReadOnlyError, "library.db is read-only: make it writable or use another library folder"
        elif "locked" in text:
            kind, fix = BusyError, "the database is locked by another program: close it and try again"
        else:
            raise
        raise kind(f"cannot write to the library at {path}: {fix}. {_AFTER}") from exc
