"""Every query of the library database; each function takes a Session and leaves commits to the caller."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from imgsearch.config import Filters
from imgsearch.encoder import ModelInfo
from imgsearch.images import Decoded
from imgsearch.orm import (STATUS_INDEXED, STATUS_SKIPPED, DupPair, DupScan, Embedding, Image, ImageHash, IndexBuild,
                           Model, Root, Run, Tag, TextVector, utc_now)

SQL_CHUNK = 900  # stay under SQLite's bound-parameter limit


@dataclass(frozen=True)
class KnownFile:
    """What the planner needs to know about a file already in the DB."""

    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str


def _chunks(items: Sequence, n: int = SQL_CHUNK) -> Iterable[Sequence]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def under(column, folder: str):  # noqa: ANN001, ANN201 (SQLAlchemy column expression)
    """SQL condition: `column` is a path inside `folder` (an index range scan, no LIKE escaping)."""
    prefix = folder.rstrip("/") + "/"
    return (column >= prefix) & (column < prefix[:-1] + chr(ord("/") + 1))


# --- vectors -----------------------------------------------------------------------------------

def to_blob(vector: np.ndarray) -> bytes:
    """float32 vector -> float16 bytes (the stored form)."""
    return np.asarray(vector, dtype=np.float16).tobytes()


def from_blobs(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """float16 bytes -> (n, dim) float32, re-normalised so scores are exact cosines."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    vectors = np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), dim).astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def load_vectors(session: Session, model_id: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """All (ids, vectors) of one model, ordered by id."""
    rows = session.execute(
        select(Embedding.image_id, Embedding.vector).where(Embedding.model_id == model_id).order_by(Embedding.image_id)
    ).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    return ids, from_blobs([r[1] for r in rows], dim)


def vectors_for(session: Session, model_id: int, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
    """Vectors of some images for one model."""
    out: dict[int, np.ndarray] = {}
    for chunk in _chunks(list(ids)):
        rows = session.execute(
            select(Embedding.image_id, Embedding.vector)
            .where(Embedding.model_id == model_id, Embedding.image_id.in_(chunk))
        ).all()
        for (image_id, _), vec in zip(rows, from_blobs([r[1] for r in rows], dim)):
            out[image_id] = vec
    return out


def has_vectors(session: Session, model_id: int) -> bool:
    """Whether the model has any vector (cheaper than counting them)."""
    return session.scalar(select(Embedding.image_id).where(Embedding.model_id == model_id).limit(1)) is not None


def count_vectors(session: Session, model_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Embedding).where(Embedding.model_id == model_id)) or 0


# --- models --------------------------------------------------------------------------------------

def get_or_create_model(session: Session, info: ModelInfo) -> Model:
    """The row for this model identity, created on first use; marks it as the most recently used."""
    model = session.scalar(select(Model).where(Model.key == info.key))
    if model is None:
        model = Model(key=info.key, name=info.name, pretrained=info.pretrained,
                      checkpoint_sha256=info.checkpoint_sha256, dim=info.dim,
                      preprocess=info.preprocess_signature())
        session.add(model)
    model.name, model.pretrained = info.name, info.pretrained  # a local folder may have moved
    model.last_used_at = utc_now()
    session.flush()
    return model


def list_models(session: Session) -> list[Model]:
    """Models, most recently used first."""
    return list(session.scalars(select(Model).order_by(Model.last_used_at.desc(), Model.id.desc())))


def bump_generation(session: Session, model_ids: Iterable[int] | None = None) -> None:
    """Mark models' vectors as changed (all models when None) so their FAISS index is rebuilt."""
    stmt = update(Model).values(generation=Model.generation + 1)
    if model_ids is not None:
        ids = list(model_ids)
        if not ids:
            return
        stmt = stmt.where(Model.id.in_(ids))
    session.execute(stmt)


# --- roots and images ----------------------------------------------------------------------------

def add_roots(session: Session, paths: Iterable[str]) -> None:
    known = set(session.scalars(select(Root.path)))
    session.add_all(Root(path=p) for p in paths if p not in known)


def list_roots(session: Session) -> list[str]:
    return list(session.scalars(select(Root.path).order_by(Root.path)))


def known_files(session: Session, roots: Sequence[str]) -> dict[str, KnownFile]:
    """Every DB file inside any of the roots, by path."""
    out: dict[str, KnownFile] = {}
    for root in roots:
        rows = session.execute(
            select(Image.id, Image.path, Image.size, Image.mtime_ns, Image.content_hash, Image.status)
            .where(under(Image.path, root))
        ).all()
        out.update((r.path, KnownFile(*r)) for r in rows)
    return out


def _image_values(d: Decoded) -> dict:
    info = d.info
    return {"path": d.path, "size": d.size, "mtime_ns": d.mtime_ns, "content_hash": d.content_hash,
            "width": info.width, "height": info.height, "format": info.format, "taken_at": info.taken_at,
            "camera_make": info.camera_make, "camera_model": info.camera_model, "gps_lat": info.gps_lat,
            "gps_lon": info.gps_lon, "status": STATUS_INDEXED, "skip_reason": None, "updated_at": utc_now()}


def save_decoded(session: Session, items: Sequence[tuple[Decoded, int | None]]) -> tuple[list[int], bool]:
    """Insert or update the rows of freshly decoded files (bulk statements); returns their ids in order,
    and True when an existing row's content changed.

    Changed content drops the row's vectors of every model (they describe the old pixels); an
    unchanged file re-encoded for another model keeps the vectors it has.
    """
    existing = {i for _, i in items if i is not None}
    before: dict[int, tuple] = {}
    for chunk in _chunks(sorted(existing)):
        before.update((r[0], tuple(r[1:])) for r in session.execute(
            select(Image.id, Image.content_hash, Image.size, Image.mtime_ns).where(Image.id.in_(chunk))))
    replaced = [i for d, i in items if i is not None and before.get(i) != (d.content_hash, d.size, d.mtime_ns)]
    for chunk in _chunks(replaced):
        session.execute(delete(Embedding).where(Embedding.image_id.in_(chunk)))
        session.execute(delete(Tag).where(Tag.image_id.in_(chunk)))  # they described the old pixels too
    updates = [{"id": i, **_image_values(d)} for d, i in items if i is not None]
    if updates:
        session.execute(update(Image), updates)  # bulk UPDATE by primary key
    new_rows = [_image_values(d) | {"first_seen_at": utc_now()} for d, i in items if i is None]
    new_ids = iter(session.scalars(insert(Image).returning(Image.id, sort_by_parameter_order=True), new_rows)
                   .all() if new_rows else [])
    return [i if i is not None else next(new_ids) for _, i in items], bool(replaced)


def save_vectors(session: Session, model_id: int, image_ids: Sequence[int], vectors: np.ndarray) -> None:
    """Store one model's vectors for these images (replacing any) and advance the model's generation;
    the vectors carry the new generation, so an index knows which ones it has not seen."""
    generation = session.scalar(select(Model.generation).where(Model.id == model_id)) + 1
    for chunk in _chunks(list(image_ids)):
        session.execute(delete(Embedding).where(Embedding.model_id == model_id, Embedding.image_id.in_(chunk)))
    blobs = np.asarray(vectors, dtype=np.float16)
    session.execute(insert(Embedding), [{"image_id": i, "model_id": model_id, "vector": blobs[n].tobytes(),
                                         "generation": generation} for n, i in enumerate(image_ids)])
    session.execute(update(Model).where(Model.id == model_id).values(generation=generation))


def vector_ids(session: Session, model_id: int, since_generation: int | None = None) -> np.ndarray:
    """Sorted ids of images with a vector from this model (only those written after a generation)."""
    stmt = select(Embedding.image_id).where(Embedding.model_id == model_id)
    if since_generation is not None:
        stmt = stmt.where(Embedding.generation > since_generation)
    return np.sort(np.fromiter(session.scalars(stmt), dtype=np.int64))


def save_skipped(session: Session, path: str, size: int, mtime_ns: int, reason: str, existing_id: int | None) -> None:
    """Record a file that could not be indexed; its (size, mtime) make the next run retry only if it changed."""
    image = session.get(Image, existing_id) if existing_id is not None else None
    if image is None:
        image = Image(path=path)
        session.add(image)
    else:
        session.execute(delete(Embedding).where(Embedding.image_id == image.id))
    image.size, image.mtime_ns, image.content_hash = size, mtime_ns, None
    image.status, image.skip_reason, image.updated_at = STATUS_SKIPPED, reason, utc_now()


def move_image(session: Session, image_id: int, path: str, size: int, mtime_ns: int) -> None:
    """A file found under a new path with the same content: keep its row and vectors."""
    session.execute(update(Image).where(Image.id == image_id)
                    .values(path=path, size=size, mtime_ns=mtime_ns, updated_at=utc_now()))


def delete_images(session: Session, image_ids: Sequence[int]) -> None:
    """Forget files gone from disk (their vectors go with them)."""
    for chunk in _chunks(list(image_ids)):
        session.execute(delete(Image).where(Image.id.in_(chunk)))


def paths_for(session: Session, ids: Sequence[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for chunk in _chunks(list(ids)):
        out.update((i, p) for i, p in session.execute(select(Image.id, Image.path).where(Image.id.in_(chunk))))
    return out


def _date_expr():  # noqa: ANN202 (SQL expression)
    """EXIF date taken, else the file's modification time, as comparable 'YYYY-MM-DD HH:MM:SS' text."""
    return func.coalesce(func.substr(Image.taken_at, 1, 19),
                         func.datetime(Image.mtime_ns / 1_000_000_000, "unixepoch"))


def filter_ids(session: Session, filters: Filters) -> np.ndarray:
    """Sorted ids of indexed images that pass every filter (all values bound as parameters)."""
    stmt = select(Image.id).where(Image.status == STATUS_INDEXED)
    if filters.folder:
        stmt = stmt.where(under(Image.path, filters.folder))
    if filters.after:
        stmt = stmt.where(_date_expr() >= filters.after.strftime("%Y-%m-%d %H:%M:%S"))
    if filters.before:
        stmt = stmt.where(_date_expr() < filters.before.strftime("%Y-%m-%d %H:%M:%S"))
    if filters.camera:
        camera = func.lower(func.coalesce(Image.camera_make, "") + " " + func.coalesce(Image.camera_model, ""))
        stmt = stmt.where(func.instr(camera, filters.camera.lower()) > 0)
    if filters.exts:
        suffixes = {f".{e}" for e in filters.exts} | ({".jpg", ".jpeg"} if {"jpg", "jpeg"} & set(filters.exts) else set())
        stmt = stmt.where(or_(*(func.lower(Image.path).endswith(sfx, autoescape=True) for sfx in sorted(suffixes))))
    if filters.min_size:
        stmt = stmt.where(func.min(Image.width, Image.height) >= filters.min_size)
    for tag in filters.tags:
        stmt = stmt.where(Image.id.in_(select(Tag.image_id).where(func.lower(Tag.label) == tag.lower())))
    return np.sort(np.fromiter(session.scalars(stmt), dtype=np.int64))


def dates_for(session: Session, ids: Sequence[int]) -> dict[int, datetime]:
    """Date taken (else file time) of some images."""
    out: dict[int, datetime] = {}
    for chunk in _chunks(list(ids)):
        for i, taken, mtime_ns in session.execute(
                select(Image.id, Image.taken_at, Image.mtime_ns).where(Image.id.in_(chunk))):
            out[i] = taken or datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc).replace(tzinfo=None)
    return out


TEXT_CACHE_SIZE = 10_000


def cached_text_vectors(session: Session, model_id: int, texts: Sequence[str], dim: int) -> dict[str, np.ndarray]:
    """The cached embeddings among these texts (reads only: a search must work on a read-only library)."""
    rows = session.execute(select(TextVector.text, TextVector.vector)
                           .where(TextVector.model_id == model_id, TextVector.text.in_(list(set(texts))))).all()
    return {text: vec for (text, _), vec in zip(rows, from_blobs([r[1] for r in rows], dim))}


def remember_text_vectors(session: Session, model_id: int, vectors: dict[str, np.ndarray | None]) -> None:
    """Store new text embeddings and mark used ones (None: already stored); keeps the newest TEXT_CACHE_SIZE."""
    now = utc_now()
    for text, vector in vectors.items():
        if vector is None:
            session.execute(update(TextVector).where(TextVector.model_id == model_id, TextVector.text == text)
                            .values(used_at=now))
        else:
            session.merge(TextVector(model_id=model_id, text=text, vector=to_blob(vector), used_at=now))
    count = session.scalar(select(func.count()).select_from(TextVector)) or 0
    if count > TEXT_CACHE_SIZE:
        oldest = select(TextVector.used_at).order_by(TextVector.used_at.desc()).offset(TEXT_CACHE_SIZE).limit(1)
        session.execute(delete(TextVector).where(TextVector.used_at <= oldest.scalar_subquery()))


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


# --- index builds and runs -----------------------------------------------------------------------

def record_build(session: Session, model_id: int, spec: str, count: int, generation: int, filename: str,
                 build_s: float, params: dict, recall_at_10: float | None, trained_count: int) -> IndexBuild:
    build = IndexBuild(model_id=model_id, spec=spec, count=count, generation=generation, filename=filename,
                       build_s=build_s, params=json.dumps(params, sort_keys=True), recall_at_10=recall_at_10,
                       trained_count=trained_count)
    session.add(build)
    session.flush()
    return build


def latest_build(session: Session, model_id: int) -> IndexBuild | None:
    return session.scalar(select(IndexBuild).where(IndexBuild.model_id == model_id)
                          .order_by(IndexBuild.id.desc()).limit(1))


def prune_builds(session: Session, model_id: int, keep_id: int) -> list[str]:
    """Forget older builds of a model; returns their file names for deletion."""
    old = session.execute(select(IndexBuild.id, IndexBuild.filename)
                          .where(IndexBuild.model_id == model_id, IndexBuild.id != keep_id)).all()
    session.execute(delete(IndexBuild).where(IndexBuild.model_id == model_id, IndexBuild.id != keep_id))
    return [name for _, name in old]


def start_run(session: Session, roots: Sequence[str], model_id: int) -> Run:
    run = Run(roots=json.dumps(list(roots)), model_id=model_id)
    session.add(run)
    session.flush()
    return run


def last_run(session: Session) -> Run | None:
    return session.scalar(select(Run).order_by(Run.id.desc()).limit(1))


# --- duplicates ----------------------------------------------------------------------------------

def indexed_photos(session: Session) -> list:
    """Rows (id, path, width, height, size, mtime_ns, content_hash, taken_at, exif_fields) of indexed images."""
    exif = sum(func.iif(c.is_(None), 0, 1) for c in (Image.taken_at, Image.camera_make, Image.camera_model,
                                                     Image.gps_lat))
    return list(session.execute(
        select(Image.id, Image.path, Image.width, Image.height, Image.size, Image.mtime_ns, Image.content_hash,
               Image.taken_at, exif.label("exif_fields")).where(Image.status == STATUS_INDEXED)))


def image_hashes(session: Session) -> dict[int, ImageHash]:
    return {h.image_id: h for h in session.scalars(select(ImageHash))}


def save_image_hashes(session: Session, rows: Sequence[dict]) -> None:
    """Insert or replace hash rows ({image_id, content_hash, phashes, full_hash, full_hash_stat})."""
    for chunk in _chunks(list(rows), 150):
        stmt = sqlite_insert(ImageHash).values(list(chunk))
        session.execute(stmt.on_conflict_do_update(
            index_elements=[ImageHash.image_id],
            set_={c: stmt.excluded[c] for c in ("content_hash", "phashes", "full_hash", "full_hash_stat")}))


def exact_candidates(session: Session) -> list[list[int]]:
    """Ids of indexed images sharing (size, partial content hash) with another: possibly byte-identical."""
    keys = (select(Image.size, Image.content_hash).where(Image.status == STATUS_INDEXED,
                                                           Image.content_hash.is_not(None))
            .group_by(Image.size, Image.content_hash).having(func.count() > 1).subquery())
    rows = session.execute(select(Image.id, Image.size, Image.content_hash)
                           .join(keys, (Image.size == keys.c.size) & (Image.content_hash == keys.c.content_hash))
                           .where(Image.status == STATUS_INDEXED).order_by(Image.id))
    groups: dict[tuple[int, str], list[int]] = {}
    for i, size, h in rows:
        groups.setdefault((size, h), []).append(i)
    return list(groups.values())


def dup_scan(session: Session, model_id: int) -> DupScan:
    scan = session.get(DupScan, model_id)
    if scan is None:
        scan = DupScan(model_id=model_id, thresholds="{}", pair_floor="{}")
        session.add(scan)
    return scan


def cached_pairs(session: Session, model_id: int) -> list[tuple]:
    return [tuple(r) for r in session.execute(
        select(DupPair.a, DupPair.b, DupPair.cosine, DupPair.hamming, DupPair.transform, DupPair.fine, DupPair.crop)
        .where(DupPair.model_id == model_id))]


def replace_pairs(session: Session, model_id: int, rescanned: Sequence[int] | None, pairs: Sequence[dict]) -> None:
    """Drop the cached pairs touching the rescanned ids (all when None), then store the new ones."""
    if rescanned is None:
        session.execute(delete(DupPair).where(DupPair.model_id == model_id))
    for chunk in _chunks(list(rescanned or [])):
        session.execute(delete(DupPair).where(DupPair.model_id == model_id,
                                              or_(DupPair.a.in_(chunk), DupPair.b.in_(chunk))))
    for chunk in _chunks(list(pairs), 150):
        session.execute(sqlite_insert(DupPair).values([{"model_id": model_id, **p} for p in chunk])
                        .on_conflict_do_nothing())


def replace_tags(session: Session, model_id: int, labels: Sequence[str], rows: Sequence[tuple[int, str, float]]) -> None:
    """Drop the model's tags with these labels, then store (image_id, label, probability) rows."""
    for chunk in _chunks(list(labels)):
        session.execute(delete(Tag).where(Tag.model_id == model_id, Tag.label.in_(chunk)))
    if rows:
        session.execute(insert(Tag), [{"image_id": i, "model_id": model_id, "label": label, "probability": p}
                                      for i, label, p in rows])


def tag_counts(session: Session) -> dict[str, int]:
    """How many images carry each tag."""
    return dict(session.execute(select(Tag.label, func.count(func.distinct(Tag.image_id))).group_by(Tag.label)).all())
