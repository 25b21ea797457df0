"""One photo of the library, as a viewer needs it: its record, its original file (only ever from inside an
indexed folder), and small WebP thumbnails cached in the library by content and size."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from imgsearch import places, store
from imgsearch.errors import ImageError, NotFoundError
from imgsearch.fs import atomic_write
from imgsearch.images.decode import thumbnail
from imgsearch.progress import Progress
from imgsearch.store.orm import STATUS_INDEXED

THUMB_SIZES = (160, 320, 640, 1280)  # the sizes a viewer may ask for (any other is rounded up to one)
THUMB_DIRNAME = "thumbs"


@dataclass(frozen=True)
class PhotoInfo:
    id: int
    path: str
    name: str
    size: int
    width: int | None
    height: int | None
    format: str | None
    taken_at: datetime | None
    camera: str | None
    gps: tuple[float, float] | None
    modified_at: datetime
    tags: list[tuple[str, float]] = field(default_factory=list)
    duration_ms: int | None = None  # a video's length
    date: datetime | None = None  # date taken, else file time (naive UTC): where the timeline shows it
    place: str | None = None  # the town its GPS position is named after (Lisbon)
    country: str | None = None  # the country's ISO code (PT)
    where: str | None = None  # both in words: "Lisbon, Portugal"


def _indexed(session: Session, image_id: int):  # -> store Image row
    """The row of an indexed photo; NotFoundError for an id the library does not have (or not as a photo)."""
    image = store.get_image(session, image_id)
    if image is None or image.status != STATUS_INDEXED:
        raise NotFoundError(f"no photo {image_id} in this library", "image_id")
    return image


def photo(sessions: sessionmaker[Session], image_id: int) -> PhotoInfo:
    """An indexed photo's record; NotFoundError for an id the library does not have (or not as a photo)."""
    with sessions() as session:
        image = _indexed(session, image_id)
        camera = " ".join(p for p in (image.camera_make, image.camera_model) if p) or None
        gps = (image.gps_lat, image.gps_lon) if image.gps_lat is not None and image.gps_lon is not None else None
        return PhotoInfo(image.id, image.path, Path(image.path).name, image.size, image.width, image.height,
                         image.format, image.taken_at, camera, gps,
                         datetime.fromtimestamp(image.mtime_ns / 1e9), store.tags_of(session, image_id),
                         image.duration_ms, image.shot_at,
                         image.place, image.country or None,
                         ", ".join(p for p in (image.place, places.country_name(image.country)) if p) or None)


def original(sessions: sessionmaker[Session], image_id: int) -> Path:
    """The photo's file, resolved; only if it leads where it led when indexed (a symbolic link followed out of the
    folders by the indexer is served while it points at the same file) or, for a photo indexed before that was
    recorded, lies inside an indexed folder now; a link swapped after indexing is refused as not found."""
    with sessions() as session:
        image = _indexed(session, image_id)
        path, indexed_at = image.path, image.real_path
        roots = [os.path.realpath(r) for r in store.list_roots(session)] if indexed_at is None else []
    if not os.path.lexists(path):
        raise NotFoundError(f"photo {image_id}'s file is gone from disk ({path}): the next `imgsearch index` "
                            "takes it out of the library", "image_id")
    real = _leads_home(path, indexed_at, roots)
    if real is None:
        raise NotFoundError(f"photo {image_id} ({path}) leads outside the library's folders now (a link or "
                            "folder changed since it was indexed): it is not served", "image_id")
    return Path(real)


def _leads_home(path: str, indexed_at: str | None, roots: Sequence[str]) -> str | None:
    """The real path of a photo's file that is there, when it leads where it led when indexed (`indexed_at`) or, for
    a photo indexed before that was recorded, into one of the (real) `roots`; None otherwise."""
    real = os.path.realpath(path)
    if indexed_at is not None:
        inside = real == indexed_at
    else:
        inside = any(os.path.commonpath([real, root]) == root for root in roots)
    return real if inside and os.path.isfile(real) else None


def intact_webp(head: bytes, size: int) -> bool:
    """Whether a file of `size` bytes starting with `head` (12 bytes at least) is a whole WebP: RIFF and WEBP marks,
    and as long as its RIFF header says (a torn or garbled cache file is not)."""
    return (len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP"
            and int.from_bytes(head[4:8], "little") + 8 == size)


def _intact_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return intact_webp(f.read(12), os.fstat(f.fileno()).st_size)
    except OSError:
        return False


class Thumbnails:
    """Thumbnails made on demand, at most `parallel` at a time (a scroll through 10,000 photos cannot starve
    searches), cached under the library folder by content fingerprint and size (a changed file gets new ones)."""

    def __init__(self, sessions: sessionmaker[Session], folder: Path, writable: bool, parallel: int = 2) -> None:
        self.sessions, self.folder, self.writable = sessions, folder, writable
        self._slots = threading.BoundedSemaphore(parallel)

    @staticmethod
    def size_for(asked: int) -> int:
        return next((s for s in THUMB_SIZES if s >= asked), THUMB_SIZES[-1])

    def get(self, image_id: int, size: int, at_ms: int = 0) -> tuple[bytes, str]:
        """(WebP bytes, cache key) of the photo at `size` (rounded up to a THUMB_SIZES entry); of a video, its frame
        at `at_ms`."""
        size = self.size_for(size)
        path = original(self.sessions, image_id)
        with self.sessions() as session:
            image = store.get_image(session, image_id)
            if image is None:  # forgotten since original() found it
                raise NotFoundError(f"no photo {image_id} in this library", "image_id")
            at_ms = at_ms if image.duration_ms is not None else 0
            key = self._key(image, size) + (f"-t{at_ms}" if at_ms else "")
        cached = self._file(key)
        if cached.is_file():
            data = cached.read_bytes()
            if intact_webp(data, len(data)):
                return data, key
            # a torn or garbled cache file (a full disk, a crash, a bad sector): made again, never served
        with self._slots:
            try:
                data = thumbnail(str(path), size, at_ms=at_ms)
            except ImageError as exc:
                raise NotFoundError(f"photo {image_id} cannot be shown: {exc.message}", "image_id") from exc
        self._keep(cached, data)
        return data, key

    def cached(self, image_ids: Sequence[int], size: int) -> dict[int, bytes]:
        """The thumbnails at `size` already made (intact) of those photos whose file is still where it was indexed:
        id -> WebP bytes, read in one query and a file each (the others are asked for one by one, and made)."""
        size = self.size_for(size)
        with self.sessions() as session:
            rows = store.indexed_rows(session, image_ids)
            roots = [os.path.realpath(r) for r in store.list_roots(session)] \
                if any(row.real_path is None for row in rows) else []
        out: dict[int, bytes] = {}
        for row in rows:  # served by the rules `original` serves a file by
            if row.duration_ms is None and os.path.lexists(row.path) and _leads_home(row.path, row.real_path, roots):
                try:
                    data = self._file(self._key(row, size)).read_bytes()
                except OSError:
                    continue
                if intact_webp(data, len(data)):
                    out[row.id] = data
        return out

    def make_all(self, size: int, progress: Progress, threads: int) -> tuple[int, int, int]:
        """Make every indexed photo's thumbnail at `size` that is not cached yet: (made, already there, failed).
        Pillow decodes and resizes outside the GIL, so threads use every core."""
        size = self.size_for(size)
        with self.sessions() as session:
            rows = [(r.path, self._file(self._key(r, size))) for r in store.indexed_photos(session)]
        # one per thumbnail file: the photos of one content (copies) share it, and it is made once for all of them
        sharing: dict[Path, list[str]] = {}
        for path, cached in rows:
            if not _intact_file(cached):
                sharing.setdefault(cached, []).append(path)

        def make(item: tuple[Path, list[str]]) -> int:  # photos served by the thumbnail made
            try:
                self._keep(item[0], thumbnail(item[1][0], size))
                return len(item[1])
            except ImageError:
                return 0

        pending = sum(len(paths) for paths in sharing.values())
        progress.stage("thumbnails", pending, "photo")
        made = 0
        with ThreadPoolExecutor(max(1, threads), thread_name_prefix="thumbs") as pool:
            for item, served in zip(sharing.items(), pool.map(make, sharing.items())):
                made += served
                progress.advance(len(item[1]))
        progress.close()
        return made, len(rows) - pending, pending - made

    @staticmethod
    def _key(row, size: int) -> str:  # an image row
        """The file's content hash when dups has computed it (copies share thumbnails), else a fingerprint of its
        path, size and modification time: either way, a changed file gets new thumbnails."""
        return f"{Thumbnails._content(row)}-{size}"

    @staticmethod
    def _content(row) -> str:  # an image row
        return row.content_hash or hashlib.sha1(f"{row.path}\0{row.size}\0{row.mtime_ns}".encode()).hexdigest()

    def _file(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.webp"

    def drop(self, rows: Sequence, keep: set[str]) -> int:  # image rows
        """Delete the cached thumbnails (every size) of these images, except content others still have: how many."""
        removed = 0
        for row in rows:
            content = self._content(row)
            if content in keep:
                continue
            for cached in (self.folder / content[:2]).glob(f"{content}-*.webp"):
                cached.unlink(missing_ok=True)
                removed += 1
        return removed

    def _keep(self, cached: Path, data: bytes) -> None:
        if not self.writable:
            return
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(cached) as f:
                f.write(data)
        except OSError:
            pass  # a full disk costs the cache, not the picture
