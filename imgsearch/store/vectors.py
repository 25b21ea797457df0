"""Queries on models, their vectors (float16 blobs, the source of truth), the text cache and index builds."""

from __future__ import annotations

import json
from datetime import timedelta
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session

from imgsearch.store import dialect
from imgsearch.store.dialect import chunks
from imgsearch.store.orm import FRAME_ID_BASE, Embedding, Frame, IndexBuild, Model, TextVector, utc_now
from imgsearch.store.records import ModelRecord


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


def load_vectors(session: Session, model_id: int, dim: int, frames: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """All (ids, vectors) of one model's stills, ordered by id; with `frames`, videos' frames too (under their
    index ids, FRAME_ID_BASE + frame id, after the stills)."""
    rows = [(i, v) for i, v in session.execute(
        select(Embedding.image_id, Embedding.vector).where(Embedding.model_id == model_id).order_by(Embedding.image_id))]
    if frames:
        rows += [(FRAME_ID_BASE + i, v) for i, v in session.execute(
            select(Frame.id, Frame.vector).where(Frame.model_id == model_id).order_by(Frame.id))]
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    return ids, from_blobs([r[1] for r in rows], dim)


def iter_vectors(session: Session, model_id: int, dim: int, chunk: int = 500_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """All of a model's (index ids, vectors), stills then videos' frames, in ascending id order, `chunk` at a time
    (a library larger than RAM streams through)."""
    for table, key, base in ((Embedding, Embedding.image_id, 0), (Frame, Frame.id, FRAME_ID_BASE)):
        last = -1
        while True:
            rows = session.execute(select(key, table.vector).where(table.model_id == model_id, key > last)
                                   .order_by(key).limit(chunk)).all()
            if not rows:
                break
            last = rows[-1][0]
            yield np.fromiter((r[0] + base for r in rows), np.int64, len(rows)), from_blobs([r[1] for r in rows], dim)


def vectors_for(session: Session, model_id: int, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
    """Vectors of some index ids (stills by image id, frames by FRAME_ID_BASE + frame id) for one model."""
    out: dict[int, np.ndarray] = {}
    stills = [int(i) for i in ids if i < FRAME_ID_BASE]
    frame_ids = [int(i) - FRAME_ID_BASE for i in ids if i >= FRAME_ID_BASE]
    for chunk in chunks(stills):
        rows = session.execute(
            select(Embedding.image_id, Embedding.vector)
            .where(Embedding.model_id == model_id, Embedding.image_id.in_(chunk))
        ).all()
        out.update(zip((r[0] for r in rows), from_blobs([r[1] for r in rows], dim)))
    for chunk in chunks(frame_ids):
        rows = session.execute(select(Frame.id, Frame.vector).where(Frame.model_id == model_id, Frame.id.in_(chunk))).all()
        out.update(zip((FRAME_ID_BASE + r[0] for r in rows), from_blobs([r[1] for r in rows], dim)))
    return out


def photo_vectors(session: Session, model_id: int, image_ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
    """One vector per image: a still's own, a video's mean frame (normalised): what 'photos like this one' asks."""
    out = vectors_for(session, model_id, image_ids, dim)
    videos = [int(i) for i in image_ids if int(i) not in out]
    for chunk in chunks(videos):
        rows = session.execute(select(Frame.image_id, Frame.vector)
                               .where(Frame.model_id == model_id, Frame.image_id.in_(chunk))).all()
        by_video: dict[int, list[np.ndarray]] = {}
        for (image_id, _), vec in zip(rows, from_blobs([r[1] for r in rows], dim)):
            by_video.setdefault(image_id, []).append(vec)
        for image_id, vecs in by_video.items():
            mean = np.mean(vecs, axis=0)
            out[image_id] = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
    return out


def models_with_vectors(session: Session) -> list[Model]:
    """Models that have any vector (of a still or a video frame), most recently used first: one query, as every
    search asks it."""
    has = exists().where(Embedding.model_id == Model.id) | exists().where(Frame.model_id == Model.id)
    return list(session.scalars(select(Model).where(has).order_by(Model.last_used_at.desc(), Model.id.desc())))


def count_vectors(session: Session, model_id: int, frames: bool = False) -> int:
    """Vectors of the model's stills (with `frames`: and of videos' frames)."""
    n = session.scalar(select(func.count()).select_from(Embedding).where(Embedding.model_id == model_id)) or 0
    if frames:
        n += session.scalar(select(func.count()).select_from(Frame).where(Frame.model_id == model_id)) or 0
    return n


def get_or_create_model(session: Session, info: ModelRecord) -> Model:
    """The row for this model identity, created on first use; marks it as the most recently used."""
    model = session.scalar(select(Model).where(Model.key == info.key))
    if model is None:
        model = Model(key=info.key, name=info.name, pretrained=info.pretrained,
                      checkpoint_sha256=info.checkpoint_sha256, dim=info.dim, preprocess=info.preprocess)
        session.add(model)
    model.name, model.pretrained = info.name, info.pretrained  # a local folder may have moved
    model.last_used_at = utc_now()
    session.flush()
    return model


def generation_of(session: Session, model_id: int) -> int:
    """How many times the model's vectors have changed (read now, in this transaction)."""
    return session.scalars(select(Model.generation).where(Model.id == model_id)).one()


def get_model(session: Session, model_id: int) -> Model | None:
    return session.get(Model, model_id)


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


def save_vectors(session: Session, model_id: int, image_ids: Sequence[int], vectors: np.ndarray) -> None:
    """Store one model's vectors for these images (replacing any) and advance the model's generation;
    the vectors carry the new generation, so an index knows which ones it has not seen."""
    generation = generation_of(session, model_id) + 1
    blobs = np.asarray(vectors, dtype=np.float16)
    rows = [{"image_id": i, "model_id": model_id, "vector": blobs[n].tobytes(), "generation": generation}
            for n, i in enumerate(image_ids)]
    if dialect.name_of(session) == dialect.POSTGRESQL:
        dialect.copy_upsert(session, Embedding, rows, keys=("image_id", "model_id"))
    else:
        for chunk in chunks(list(image_ids)):
            session.execute(delete(Embedding).where(Embedding.model_id == model_id, Embedding.image_id.in_(chunk)))
        dialect.bulk_insert(session, Embedding, rows)
    session.execute(update(Model).where(Model.id == model_id).values(generation=generation))


def vector_ids(session: Session, model_id: int, since_generation: int | None = None, frames: bool = False) -> np.ndarray:
    """Sorted ids of images with a vector from this model (only those written after a generation); with `frames`,
    the index ids of videos' frames too."""
    stmt = select(Embedding.image_id).where(Embedding.model_id == model_id)
    if since_generation is not None:
        stmt = stmt.where(Embedding.generation > since_generation)
    ids = list(session.scalars(stmt))
    if frames:
        stmt = select(Frame.id).where(Frame.model_id == model_id)
        if since_generation is not None:
            stmt = stmt.where(Frame.generation > since_generation)
        ids += [FRAME_ID_BASE + i for i in session.scalars(stmt)]
    return np.sort(np.asarray(ids, dtype=np.int64))


TEXT_CACHE_SIZE = 10_000
TEXT_CACHE_AGE = timedelta(days=180)  # a text nobody searched for this long is embedded again if ever asked
TOUCH_AFTER = timedelta(hours=1)  # a cached text's use is recorded at most this often: most searches write nothing


def cached_text_vectors(session: Session, model_id: int, texts: Sequence[str],
                        dim: int) -> tuple[dict[str, np.ndarray], set[str]]:
    """The cached embeddings among these texts, and those whose last recorded use is older than TOUCH_AFTER (reads
    only: a search must work on a read-only library)."""
    rows = session.execute(select(TextVector.text, TextVector.vector, TextVector.used_at)
                           .where(TextVector.model_id == model_id, TextVector.text.in_(list(set(texts))))).all()
    old = utc_now() - TOUCH_AFTER
    return ({text: vec for (text, _, _), vec in zip(rows, from_blobs([r[1] for r in rows], dim))},
            {text for text, _, used in rows if used is None or used < old})


def remember_text_vectors(session: Session, model_id: int, vectors: dict[str, np.ndarray | None]) -> None:
    """Store new text embeddings and mark used ones (None: already stored); keeps the newest TEXT_CACHE_SIZE, used
    within TEXT_CACHE_AGE."""
    now = utc_now()
    for text, vector in vectors.items():
        if vector is None:
            session.execute(update(TextVector).where(TextVector.model_id == model_id, TextVector.text == text)
                            .values(used_at=now))
    # an upsert: another search may have stored the same text meanwhile
    dialect.upsert(session, TextVector, [{"model_id": model_id, "text": text, "vector": to_blob(vector), "used_at": now}
                                         for text, vector in vectors.items() if vector is not None],
                   [TextVector.model_id, TextVector.text], ("vector", "used_at"))
    session.execute(delete(TextVector).where(TextVector.used_at < now - TEXT_CACHE_AGE))
    count = session.scalar(select(func.count()).select_from(TextVector)) or 0
    if count > TEXT_CACHE_SIZE:
        oldest = select(TextVector.used_at).order_by(TextVector.used_at.desc()).offset(TEXT_CACHE_SIZE).limit(1)
        session.execute(delete(TextVector).where(TextVector.used_at <= oldest.scalar_subquery()))


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
