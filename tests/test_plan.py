"""The planner is pure: classification by (path, size, mtime) and moves by (size, content hash)."""

from __future__ import annotations

from imgsearch.store import KnownFile
from imgsearch.images.crawl import FileEntry, Skipped
from indexer.plan import make_plan


def known(id_: int, path: str, size: int = 10, mtime: int = 1, h: str | None = "h", status: str = "indexed") -> KnownFile:
    return KnownFile(id_, path, size, mtime, h, status)


def no_hash(path: str) -> str:
    raise AssertionError(f"hashed {path} although no move was possible")


def test_classification() -> None:
    db = {k.path: k for k in [known(1, "/r/same"), known(2, "/r/touched"), known(3, "/r/gone"),
                              known(4, "/r/bad", h=None, status="skipped"), known(5, "/r/bad2", h=None, status="skipped")]}
    crawled = [FileEntry("/r/same", 10, 1), FileEntry("/r/touched", 10, 2), FileEntry("/r/new", 99, 1),
               FileEntry("/r/bad", 10, 1), FileEntry("/r/bad2", 11, 1), FileEntry("/r/same", 10, 1)]
    plan = make_plan(crawled, db, no_hash)
    assert [k.id for k in plan.unchanged] == [1]
    assert [(e.path, k.id) for e, k in plan.changed] == [("/r/touched", 2), ("/r/bad2", 5)]
    assert [e.path for e in plan.new] == ["/r/new"]
    assert [k.id for k in plan.still_skipped] == [4]
    assert [k.id for k in plan.missing] == [3]
    assert plan.moved == []


def test_moves_need_equal_size_and_hash_and_pair_each_old_file_once() -> None:
    db = {k.path: k for k in [known(1, "/r/a", size=10, h="x"), known(2, "/r/b", size=10, h="x"),
                              known(3, "/r/c", size=20, h="y")]}
    hashes = {"/s/a1": "x", "/s/a2": "x", "/s/a3": "x", "/s/c": "other"}
    crawled = [FileEntry(p, 10 if p.startswith("/s/a") else 20, 5) for p in hashes]
    plan = make_plan(crawled, db, hashes.__getitem__)
    assert sorted((e.path, k.id) for e, k in plan.moved) == [("/s/a1", 2), ("/s/a2", 1)]
    assert [e.path for e in plan.new] == ["/s/a3", "/s/c"]
    assert [k.id for k in plan.missing] == [3]


def test_unreadable_files_are_recorded_unless_already_skipped_unchanged() -> None:
    db = {"/r/x": known(1, "/r/x", size=0, mtime=0, h=None, status="skipped"), "/r/y": known(2, "/r/y")}
    crawled = [Skipped("/r/x", "dangling symlink"), Skipped("/r/y", "not a regular file"),
               Skipped("/r/z", "dangling symlink")]
    plan = make_plan(crawled, db, no_hash)
    assert [k.id for k in plan.still_skipped] == [1]
    assert [(s.path, k.id if k else None) for s, k in plan.unreadable] == [("/r/y", 2), ("/r/z", None)]
    assert plan.missing == []


def test_files_under_an_unlistable_folder_are_kept_not_removed() -> None:
    db = {k.path: k for k in [known(1, "/r/nas/a"), known(2, "/r/nas2/b"), known(3, "/r/gone")]}
    plan = make_plan([Skipped("/r/nas", "cannot list folder: Permission denied", is_dir=True)], db, no_hash)
    assert [k.id for k in plan.unchanged] == [1]
    assert sorted(k.id for k in plan.missing) == [2, 3]  # "/r/nas2" is not inside "/r/nas"
    assert plan.unreadable == [] and [d.path for d in plan.unlisted_dirs] == ["/r/nas"]
