"""The crawler: extensions, excludes, symlinks, unreadable and odd paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imgsearch.config import CrawlSettings
from imgsearch.images.crawl import FileEntry, Skipped, crawl


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def names(root: Path, settings: CrawlSettings = CrawlSettings()) -> dict[str, str]:
    """relative path -> 'ok' or the skip reason"""
    out = {}
    for e in crawl(str(root), settings):
        rel = os.path.relpath(e.path, root)
        out[rel] = "ok" if isinstance(e, FileEntry) else e.reason
    return out


def test_extensions_are_case_insensitive_and_other_files_ignored(tmp_path: Path) -> None:
    wanted = ["a.JPG", "b.jpeg", "c.Png", "d.webp", "e.gif", "f.bmp", "g.TIFF", "h.tif", "i.HEIC", "j.avif", "k.jxl",
              "l.cr2", "m.NEF", "n.dng", "o.MOV", "p.mp4", "q.mkv"]
    for n in wanted + ["notes.txt", "song.mp3", "doc.pdf", "x.xmp"]:
        touch(tmp_path / n)
    assert sorted(names(tmp_path)) == sorted(wanted)


def test_default_excludes_hidden_and_user_globs(tmp_path: Path) -> None:
    for rel in (".git/x.jpg", "node_modules/x.jpg", "@eaDir/x.jpg", ".Trash-1000/x.jpg", "$RECYCLE.BIN/x.jpg",
                "System Volume Information/x.jpg", ".hidden.jpg", "keep/x.jpg", "drafts/y.jpg", "keep/tmp_1.jpg"):
        touch(tmp_path / rel)
    assert sorted(names(tmp_path, CrawlSettings(excludes=("drafts", "tmp_*")))) == ["keep/x.jpg"]
    with_hidden = names(tmp_path, CrawlSettings(include_hidden=True))
    assert ".hidden.jpg" in with_hidden and ".git/x.jpg" not in with_hidden


def test_symlinks_followed_once_without_loops(tmp_path: Path) -> None:
    touch(tmp_path / "real" / "a.jpg")
    os.symlink(tmp_path / "real", tmp_path / "link")
    os.symlink(tmp_path, tmp_path / "real" / "loop")
    os.symlink(tmp_path / "real" / "a.jpg", tmp_path / "alias.jpg")
    os.symlink(tmp_path / "gone.jpg", tmp_path / "dangling.jpg")
    found = names(tmp_path)
    assert found["alias.jpg"] == "ok"
    assert found["dangling.jpg"] == "dangling symlink"
    assert sum(1 for k in found if k.endswith("a.jpg")) == 1  # the folder is walked once


def test_special_files_and_non_utf8_names_are_skipped_with_reasons(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "dir.jpg").mkdir()
    touch(tmp_path / "dir.jpg" / "inner.png")
    raw = os.fsencode(tmp_path) + b"/caf\xe9.jpg"
    with open(raw, "wb") as f:
        f.write(b"x")
    found = names(tmp_path)
    assert found["pipe.jpg"] == "not a regular file"
    assert found["dir.jpg/inner.png"] == "ok"
    assert found["caf\\xe9.jpg"].startswith("file name is not valid UTF-8")


def test_unreadable_folder_is_reported_and_the_rest_crawled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path / "locked" / "a.jpg")
    touch(tmp_path / "open" / "b.jpg")
    real_scandir = os.scandir

    def scandir(path):  # root reads any folder, so deny it here
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = names(tmp_path)
    assert found == {"locked": "cannot list folder: Permission denied", "open/b.jpg": "ok"}
    locked = next(e for e in crawl(str(tmp_path), CrawlSettings()) if e.path.endswith("locked"))
    assert isinstance(locked, Skipped) and locked.is_dir


def test_crawl_entries_carry_stat(tmp_path: Path) -> None:
    p = touch(tmp_path / "a.jpg", b"12345")
    (entry,) = list(crawl(str(tmp_path), CrawlSettings()))
    assert isinstance(entry, FileEntry) and not isinstance(entry, Skipped)
    assert (entry.path, entry.size, entry.mtime_ns) == (str(p), 5, p.stat().st_mtime_ns)
