"""Diff a crawl against the DB: new, changed, moved, unchanged, missing. Pure: no I/O of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from imgsearch.fs import is_inside
from imgsearch.store.orm import STATUS_INDEXED, STATUS_SKIPPED
from imgsearch.store import KnownFile
from imgsearch.images.crawl import FileEntry, Skipped


@dataclass
class Plan:
    """What one run has to do; `known` ids say which DB rows each entry updates."""

    new: list[FileEntry] = field(default_factory=list)
    changed: list[tuple[FileEntry, KnownFile]] = field(default_factory=list)
    moved: list[tuple[FileEntry, KnownFile]] = field(default_factory=list)
    unchanged: list[KnownFile] = field(default_factory=list)
    still_skipped: list[KnownFile] = field(default_factory=list)  # failed before and not changed since
    unreadable: list[tuple[Skipped, KnownFile | None]] = field(default_factory=list)
    unlisted_dirs: list[Skipped] = field(default_factory=list)  # folders that could not be listed
    missing: list[KnownFile] = field(default_factory=list)


def _same_stat(entry: FileEntry | Skipped, known: KnownFile) -> bool:
    return (entry.size, entry.mtime_ns) == (known.size, known.mtime_ns)


def make_plan(crawled: Iterable[FileEntry | Skipped], known: dict[str, KnownFile],
              hash_file: Callable[[str], str | None], retry: Callable[[KnownFile], bool] = lambda k: False) -> Plan:
    """Classify every crawled file; `hash_file` is called only for new files that may be moved ones. A file skipped
    before and unchanged since is tried again only when `retry` says so (its decoder has been installed since)."""
    plan = Plan()
    seen: set[str] = set()
    for entry in crawled:
        if entry.path in seen:
            continue
        seen.add(entry.path)
        old = known.get(entry.path)
        if isinstance(entry, Skipped) and entry.is_dir:
            plan.unlisted_dirs.append(entry)
        elif isinstance(entry, Skipped):
            if old is not None and old.status == STATUS_SKIPPED and _same_stat(entry, old):
                plan.still_skipped.append(old)
            else:
                plan.unreadable.append((entry, old))
        elif old is None:
            plan.new.append(entry)
        elif not _same_stat(entry, old) or (old.status == STATUS_SKIPPED and retry(old)):
            plan.changed.append((entry, old))
        elif old.status == STATUS_SKIPPED:
            plan.still_skipped.append(old)
        else:
            plan.unchanged.append(old)
    for path, k in known.items():
        if path in seen:
            continue
        if any(is_inside(path, d.path) for d in plan.unlisted_dirs):
            plan.unchanged.append(k)  # unseen, not gone: a folder we could not list this time
        else:
            plan.missing.append(k)
    _find_moves(plan, hash_file)
    return plan


def _find_moves(plan: Plan, hash_file: Callable[[str], str | None]) -> None:
    """A new path whose (size, content hash) equals a missing indexed file's is that file, moved."""
    by_key: dict[tuple[int, str], list[KnownFile]] = {}
    for k in plan.missing:
        if k.status == STATUS_INDEXED and k.content_hash:
            by_key.setdefault((k.size, k.content_hash), []).append(k)
    if not by_key:
        return
    sizes = {size for size, _ in by_key}
    still_new: list[FileEntry] = []
    moved_ids: set[int] = set()
    for entry in plan.new:
        candidates = by_key.get((entry.size, hash_file(entry.path) or "")) if entry.size in sizes else None
        if candidates:
            old = candidates.pop()
            plan.moved.append((entry, old))
            moved_ids.add(old.id)
        else:
            still_new.append(entry)
    plan.new = still_new
    plan.missing = [k for k in plan.missing if k.id not in moved_ids]
