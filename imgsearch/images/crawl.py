"""Walk roots and list candidate files: every extension of a format imgsearch reads (images.formats), images and
videos alike. No DB, no Pillow."""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from imgsearch.config import DEFAULT_EXCLUDES, CrawlSettings
from imgsearch.images.formats import EXTENSIONS, PICTURE_EXTENSIONS


@dataclass(frozen=True)
class FileEntry:
    """An image file as stat saw it (symlinks resolved to their target's size and mtime)."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Skipped:
    """A file (or folder) that cannot be indexed, with the reason a user will read; made by the
    crawler (unreadable paths) and by the loader (undecodable files)."""

    path: str
    reason: str
    size: int = 0
    mtime_ns: int = 0
    is_dir: bool = False  # a folder that cannot be listed: what the DB knows under it is kept


def _excluded(name: str, rel: str, settings: CrawlSettings) -> bool:
    if not settings.include_hidden and name.startswith("."):
        return True
    if any(fnmatch.fnmatch(name, pat) for pat in DEFAULT_EXCLUDES):
        return True
    return any(fnmatch.fnmatch(name, pat) or fnmatch.fnmatch(rel, pat) for pat in settings.excludes)


def display_path(raw: str) -> str:
    """A path as text the DB can hold; bytes that are not UTF-8 are shown as \\xNN."""
    try:
        raw.encode("utf-8")
        return raw
    except UnicodeEncodeError:
        return os.fsencode(raw).decode("utf-8", "backslashreplace")


def crawl(root: str, settings: CrawlSettings,
          seen_dirs: set[tuple[int, int]] | None = None) -> Iterator[FileEntry | Skipped]:
    """Yield every image file under `root` (recursively, following symlinks without loops).

    `seen_dirs` (device, inode) is shared by the crawls of several roots, so that a folder reached from two of
    them (a root given twice, a link from one into another) is walked once.
    """
    root = os.path.abspath(root)
    seen_dirs = set() if seen_dirs is None else seen_dirs
    try:
        st = os.stat(root)
    except OSError as exc:
        yield Skipped(root, f"cannot open folder: {exc.strerror}", is_dir=True)
        return
    if (st.st_dev, st.st_ino) in seen_dirs:
        return
    seen_dirs.add((st.st_dev, st.st_ino))
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield Skipped(display_path(folder), f"cannot list folder: {exc.strerror}", is_dir=True)
            continue
        subdirs: list[str] = []
        for entry in entries:
            rel = os.path.relpath(entry.path, root)
            if _excluded(entry.name, rel, settings):
                continue
            yield from _visit(entry, settings, seen_dirs, subdirs)
        stack.extend(reversed(subdirs))


def _visit(entry: os.DirEntry, settings: CrawlSettings, seen_dirs: set[tuple[int, int]],
           subdirs: list[str]) -> Iterator[FileEntry | Skipped]:
    is_image_name = os.path.splitext(entry.name)[1].lower() in (settings.extensions or EXTENSIONS)
    try:
        st = entry.stat(follow_symlinks=True)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:  # a folder or file deeper than the system's path limit
            yield Skipped(display_path(entry.path), f"path too long for this system ({len(os.fsencode(entry.path))} "
                                                    "bytes): move or rename it to index it")
        elif is_image_name:
            if exc.errno == errno.ELOOP:
                reason = "symlink loop"
            else:
                reason = "dangling symlink" if entry.is_symlink() else f"cannot stat: {exc.strerror}"
            yield Skipped(display_path(entry.path), reason)
        return
    if stat.S_ISDIR(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if key not in seen_dirs:  # a symlink loop or a second link to a folder already walked
            seen_dirs.add(key)
            subdirs.append(entry.path)
        return
    if not is_image_name:
        return
    path = display_path(entry.path)
    if path != entry.path:
        yield Skipped(path, "file name is not valid UTF-8 (rename the file to index it)", st.st_size, st.st_mtime_ns)
    elif not stat.S_ISREG(st.st_mode):
        yield Skipped(path, "not a regular file", 0, st.st_mtime_ns)
    else:
        yield FileEntry(path, st.st_size, st.st_mtime_ns)


def image_files(folder: Path, settings: CrawlSettings = CrawlSettings(extensions=PICTURE_EXTENSIONS)) -> list[Path]:
    """Every readable image file (no videos) under a folder, sorted, by the crawler's rules (for training and eval
    sets)."""
    return sorted(Path(e.path) for e in crawl(str(folder), settings) if isinstance(e, FileEntry))
