"""Queries on roots and images: what the crawler knows, metadata, filters, skipped files."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Select, and_, case, delete, func, literal, or_, select, update
from sqlalchemy.orm import Session

from imgsearch.filters import Filters, Near
from imgsearch.store import dialect
from imgsearch.store.dialect import chunks
from imgsearch.store.records import ImageRecord
from imgsearch.store.tags import tagged
from imgsearch.store.orm import (FRAME_ID_BASE, STATUS_INDEXED, STATUS_SKIPPED, Embedding, Frame, Image, Root, Tag,
                                 utc_now)


def under(column, folder: str):  # SQLAlchemy column expression
    """SQL condition: `column` is a path inside `folder` (an index range scan, no LIKE escaping)."""
    prefix = folder.rstrip("/") + "/"
    return (column >= prefix) & (column < prefix[:-1] + chr(ord("/") + 1))


def photo_date(taken_at: datetime | None, mtime_ns: int) -> datetime:
    """The date taken, else the file's modification time (naive UTC): what date filters and sorting use."""
    return taken_at or datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class KnownFile:
    """What the planner needs to know about a file already in the DB."""

    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str
    skip_reason: str | None = None


def add_roots(session: Session, paths: Iterable[str]) -> None:
    known = set(session.scalars(select(Root.path)))
    session.add_all(Root(path=p) for p in paths if p not in known)


def list_roots(session: Session) -> list[str]:
    return list(session.scalars(select(Root.path).order_by(Root.path)))


def forget_root(session: Session, root: str) -> list[KnownFile]:
    """Remove a root and every file recorded under it (vectors, frames, tags and hashes go with them); what the
    removed rows were."""
    gone = list(known_files(session, [root]).values())
    delete_images(session, [f.id for f in gone])
    session.execute(delete(Root).where(Root.path == root))
    return gone


def content_keys_in_use(session: Session, keys: Iterable[str]) -> set[str]:
    """Which of these content hashes some recorded file still has (copies share thumbnails)."""
    wanted = list(dict.fromkeys(keys))
    return {k for chunk in chunks(wanted) for k in session.scalars(select(Image.content_hash)
                                                                   .where(Image.content_hash.in_(chunk))) if k}


def known_files(session: Session, roots: Sequence[str]) -> dict[str, KnownFile]:
    """Every DB file inside any of the roots, by path."""
    out: dict[str, KnownFile] = {}
    for root in roots:
        rows = session.execute(
            select(Image.id, Image.path, Image.size, Image.mtime_ns, Image.content_hash, Image.status,
                   Image.skip_reason).where(under(Image.path, root))
        ).all()
        out.update((r.path, KnownFile(*r)) for r in rows)
    return out


def _image_values(record: ImageRecord) -> dict:
    # a shallow copy of the fields: dataclasses.asdict deep-copies each value, and took half of a bulk write's time
    values = {f.name: getattr(record, f.name) for f in fields(record)}
    return values | {"shot_at": photo_date(record.taken_at, record.mtime_ns), "status": STATUS_INDEXED,
                     "skip_reason": None, "updated_at": utc_now()}


def save_images(session: Session, items: Sequence[tuple[ImageRecord, int | None]]) -> tuple[list[int], bool]:
    """Insert or update the rows of freshly decoded files (bulk statements); returns their ids in order,
    and True when an existing row's content changed.

    Changed content drops the row's vectors of every model (they describe the old pixels); an
    unchanged file re-encoded for another model keeps the vectors it has.
    """
    existing = {i for _, i in items if i is not None}
    before: dict[int, tuple] = {}
    for chunk in chunks(sorted(existing)):
        before.update((r[0], tuple(r[1:])) for r in session.execute(
            select(Image.id, Image.content_hash, Image.size, Image.mtime_ns).where(Image.id.in_(chunk))))
    replaced = [i for d, i in items if i is not None and before.get(i) != (d.content_hash, d.size, d.mtime_ns)]
    for chunk in chunks(replaced):
        session.execute(delete(Embedding).where(Embedding.image_id.in_(chunk)))
        session.execute(delete(Frame).where(Frame.image_id.in_(chunk)))
        session.execute(delete(Tag).where(Tag.image_id.in_(chunk)))  # they described the old pixels too
    updates = [{"id": i, **_image_values(d)} for d, i in items if i is not None]
    if updates:
        session.execute(update(Image), updates)  # bulk UPDATE by primary key
    new_rows = [_image_values(d) | {"first_seen_at": utc_now()} for d, i in items if i is None]
    new_ids = iter(dialect.insert_with_ids(session, Image, new_rows))
    return [i if i is not None else next(new_ids) for _, i in items], bool(replaced)


def save_skipped(session: Session, path: str, size: int, mtime_ns: int, reason: str, existing_id: int | None) -> None:
    """Record a file that could not be indexed; its (size, mtime) make the next run retry only if it changed."""
    image = session.get(Image, existing_id) if existing_id is not None else None
    if image is None:
        image = Image(path=path)
        session.add(image)
    else:
        session.execute(delete(Embedding).where(Embedding.image_id == image.id))
        session.execute(delete(Frame).where(Frame.image_id == image.id))
    image.size, image.mtime_ns, image.content_hash = size, mtime_ns, None
    one_line = " ".join(reason.split())  # a decoder's multi-line message would break `status --skipped`'s TSV rows
    image.status, image.skip_reason, image.updated_at = STATUS_SKIPPED, one_line, utc_now()


def move_image(session: Session, image_id: int, path: str, size: int, mtime_ns: int, real_path: str | None) -> None:
    """A file found under a new path with the same content: keep its row and vectors."""
    taken = session.scalar(select(Image.taken_at).where(Image.id == image_id))
    session.execute(update(Image).where(Image.id == image_id)
                    .values(path=path, size=size, mtime_ns=mtime_ns, real_path=real_path, updated_at=utc_now(),
                            shot_at=photo_date(taken, mtime_ns)))


def delete_images(session: Session, image_ids: Sequence[int]) -> None:
    """Forget files gone from disk (their vectors go with them)."""
    for chunk in chunks(list(image_ids)):
        session.execute(delete(Image).where(Image.id.in_(chunk)))


def indexed_rows(session: Session, ids: Sequence[int]) -> list[Image]:
    """The rows of those of `ids` that are indexed photos."""
    out: list[Image] = []
    for chunk in chunks(list(ids)):
        out.extend(session.scalars(select(Image).where(Image.id.in_(chunk), Image.status == STATUS_INDEXED)))
    return out


def indexed_paths(session: Session, ids: Sequence[int]) -> dict[int, str]:
    """id -> path of those of `ids` that are indexed photos."""
    out: dict[int, str] = {}
    for chunk in chunks(list(ids)):
        out.update((i, p) for i, p in session.execute(
            select(Image.id, Image.path).where(Image.id.in_(chunk), Image.status == STATUS_INDEXED)))
    return out


def paths_for(session: Session, ids: Sequence[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for chunk in chunks(list(ids)):
        out.update((i, p) for i, p in session.execute(select(Image.id, Image.path).where(Image.id.in_(chunk))))
    return out


KM_PER_DEGREE = 111.195  # of latitude (the Earth's mean radius, 6,371 km)


def _near(session: Session, near: Near) -> ColumnElement[bool]:
    """GPS within near.km of the point: a latitude band (an index range), then the equirectangular distance, exact
    to a fraction of a percent over a city or a country and right across the 180th meridian."""
    radius = near.km / KM_PER_DEGREE
    scale = math.cos(math.radians(near.lat))
    apart = func.abs(Image.gps_lon - near.lon)
    east_west = case((apart > 180, 360 - apart), else_=apart) * scale
    north_south = Image.gps_lat - near.lat
    return and_(Image.gps_lat.between(near.lat - radius, near.lat + radius), Image.gps_lon.is_not(None),
                north_south * north_south + east_west * east_west <= radius * radius)


def _extensions(session: Session, exts: tuple[str, ...]) -> ColumnElement[bool]:
    suffixes = {f".{e}" for e in exts} | ({".jpg", ".jpeg"} if {"jpg", "jpeg"} & set(exts) else set())
    return or_(*(func.lower(Image.path).endswith(sfx, autoescape=True) for sfx in sorted(suffixes)))


def _camera(session: Session, text: str) -> ColumnElement[bool]:
    camera = func.lower(func.coalesce(Image.camera_make, "") + " " + func.coalesce(Image.camera_model, ""))
    return camera.contains(text.lower(), autoescape=True)


def _tags(session: Session, labels: tuple[str, ...]) -> ColumnElement[bool]:
    return and_(*(Image.id.in_(tagged(label)) for label in labels))


def _when(session: Session) -> ColumnElement[datetime]:  # the indexed date: taken, else the file's time
    return Image.shot_at  # type: ignore[return-value]


# Each filter's SQL (imgsearch.filters declares them): (session, the filter's value) -> a condition on Image.
CONDITIONS: dict[str, Callable[[Session, Any], ColumnElement[bool]]] = {
    "folder": lambda session, folder: under(Image.path, folder),
    "after": lambda session, day: _when(session) >= day,
    "before": lambda session, day: _when(session) < day,
    "camera": _camera,
    "ext": _extensions,
    "tag": _tags,
    "type": lambda session, kind: Image.duration_ms.is_not(None) if kind == "video" else Image.duration_ms.is_(None),
    "min_size": lambda session, side: and_(Image.width >= side, Image.height >= side),
    "near": _near,
    "place": lambda session, town: func.lower(Image.place) == town.lower(),
    "country": lambda session, code: Image.country == code,
}


def _passing(filters: Filters, session: Session) -> list[ColumnElement[bool]]:
    """The conditions on Image of indexed images that pass every filter (all values bound as parameters)."""
    return [Image.status == STATUS_INDEXED, *(CONDITIONS[name](session, value) for name, value in filters.items())]


def _filtered(filters: Filters, session: Session) -> Select[Any]:
    """The ids of indexed images that pass every filter, as a statement."""
    return select(Image.id).where(*_passing(filters, session))


def filter_ids(session: Session, filters: Filters) -> np.ndarray:
    """Sorted ids of indexed images that pass every filter."""
    return np.sort(np.fromiter(session.scalars(_filtered(filters, session)), dtype=np.int64))


def filter_index_ids(session: Session, model_id: int, filters: Filters) -> np.ndarray:
    """Sorted index ids that pass every filter: the images' ids and, for videos, their frames' (one model's)."""
    frames = select(Frame.id).where(Frame.model_id == model_id, Frame.image_id.in_(_filtered(filters, session)))
    frame_ids = np.fromiter(session.scalars(frames), dtype=np.int64) + FRAME_ID_BASE
    return np.union1d(filter_ids(session, filters), frame_ids)


def unplaced(session: Session) -> list[tuple[int, float, float]]:
    """(id, lat, lon) of indexed photos with a GPS position whose place was never looked up."""
    return [(i, lat or 0.0, lon or 0.0) for i, lat, lon in session.execute(  # never None: the WHERE says so
        select(Image.id, Image.gps_lat, Image.gps_lon).where(Image.status == STATUS_INDEXED, Image.gps_lat.is_not(None),
                                                             Image.gps_lon.is_not(None), Image.country.is_(None)))]


def save_places(session: Session, rows: Sequence[tuple[int, str | None, str]]) -> None:
    """(id, town or None, country code or "") per photo."""
    if rows:
        session.execute(update(Image), [{"id": i, "place": place, "country": country} for i, place, country in rows])


def gps_points(session: Session, filters: Filters) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64, positions (n, 2) float64 lat/lon) of the photos with a GPS position that pass the filters."""
    rows = session.execute(select(Image.id, Image.gps_lat, Image.gps_lon).where(
        *_passing(filters, session), Image.gps_lat.is_not(None), Image.gps_lon.is_not(None))
        .order_by(Image.id)).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    positions = np.array([(r[1], r[2]) for r in rows], dtype=np.float64).reshape(-1, 2)
    return ids, positions


def month_counts(session: Session, filters: Filters) -> list[tuple[str, int]]:
    """('YYYY-MM', photos) of every month with photos that pass the filters (by date taken, else file time),
    newest first: a timeline's headings."""
    month = dialect.month_of(session, _when(session)).label("month")
    rows = session.execute(select(month, func.count()).where(*_passing(filters, session))
                           .group_by(month).order_by(month.desc()))
    return [(m, n) for m, n in rows]


def month_photos(session: Session, start: datetime, end: datetime, filters: Filters, offset: int,
                 limit: int) -> list:
    """Rows (id, path, shot_at, duration_ms) of the photos dated in [start, end) that pass the filters, newest first
    (ties by id), a page of them."""
    when = _when(session)
    return list(session.execute(
        select(Image.id, Image.path, Image.shot_at, Image.duration_ms)
        .where(*_passing(filters, session), when >= start, when < end)
        .order_by(when.desc(), Image.id.desc()).offset(offset).limit(limit)))


def dates_for(session: Session, ids: Sequence[int]) -> dict[int, datetime]:
    """Date taken (else file time: the stored shot_at) of some indexed images."""
    out: dict[int, datetime] = {}
    for chunk in chunks(list(ids)):
        out.update((i, when) for i, when in session.execute(select(Image.id, Image.shot_at).where(Image.id.in_(chunk)))
                   if when is not None)
    return out


def get_image(session: Session, image_id: int) -> Image | None:
    return session.get(Image, image_id)


def image_id_for_path(session: Session, path: str) -> int | None:
    return session.scalar(select(Image.id).where(Image.path == path))


def skipped_images(session: Session) -> list[tuple[str, str]]:
    """(path, reason) of every file that could not be indexed."""
    rows = session.execute(select(Image.path, Image.skip_reason).where(Image.status == STATUS_SKIPPED)
                           .order_by(Image.path))
    return [(p, r or "") for p, r in rows]


def count_images(session: Session, root: str | None = None) -> dict[str, int]:
    """{status: count}, optionally inside one root."""
    stmt = select(Image.status, func.count()).group_by(Image.status)
    if root is not None:
        stmt = stmt.where(under(Image.path, root))
    return {status: n for status, n in session.execute(stmt)}


def indexed_photos(session: Session) -> list:
    """Rows (id, path, width, height, size, mtime_ns, content_hash, taken_at, shot_at, format, exif_fields) of indexed
    images."""
    exif: ColumnElement[int] = literal(0)
    for column in (Image.taken_at, Image.camera_make, Image.camera_model, Image.gps_lat):
        exif = exif + case((column.is_(None), 0), else_=1)
    return list(session.execute(
        select(Image.id, Image.path, Image.width, Image.height, Image.size, Image.mtime_ns, Image.content_hash,
               Image.taken_at, Image.shot_at, Image.format, exif.label("exif_fields"))
        .where(Image.status == STATUS_INDEXED)))
