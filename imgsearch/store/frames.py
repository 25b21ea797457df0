"""Queries on video frames: each sampled key frame of a video has its own vector per model, and shares the
model's FAISS index with the still images under an id of its own (FRAME_ID_BASE + frame id)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from imgsearch.store import dialect
from imgsearch.store.dialect import chunks
from imgsearch.store.orm import FRAME_ID_BASE, Embedding, Frame, Model
from imgsearch.store.vectors import from_blobs, generation_of


def save_frames(session: Session, model_id: int, image_id: int, times_ms: Sequence[int], vectors: np.ndarray) -> None:
    """Store one model's frame vectors of a video (replacing its earlier frames) and advance the model's
    generation, as save_vectors does for stills."""
    generation = generation_of(session, model_id) + 1
    session.execute(delete(Frame).where(Frame.model_id == model_id, Frame.image_id == image_id))
    session.execute(delete(Embedding).where(Embedding.model_id == model_id, Embedding.image_id == image_id))
    blobs = np.asarray(vectors, dtype=np.float16)
    dialect.bulk_insert(session, Frame, [{"image_id": image_id, "model_id": model_id, "t_ms": int(t),
                                          "generation": generation, "vector": blobs[n].tobytes()}
                                         for n, t in enumerate(times_ms)])
    session.execute(update(Model).where(Model.id == model_id).values(generation=generation))


def frame_owners(session: Session, index_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """index id -> (video's image id, frame time in ms), for the frame ids among `index_ids`."""
    frame_ids = [int(i) - FRAME_ID_BASE for i in index_ids if i >= FRAME_ID_BASE]
    out: dict[int, tuple[int, int]] = {}
    for chunk in chunks(frame_ids):
        out.update((FRAME_ID_BASE + i, (image_id, t)) for i, image_id, t in session.execute(
            select(Frame.id, Frame.image_id, Frame.t_ms).where(Frame.id.in_(chunk))))
    return out


def frame_index_ids(session: Session, model_id: int, image_ids: Sequence[int]) -> np.ndarray:
    """The FAISS ids of the frames of these images (videos) for one model."""
    out: list[int] = []
    for chunk in chunks(list(image_ids)):
        out += session.scalars(select(Frame.id).where(Frame.model_id == model_id, Frame.image_id.in_(chunk)))
    return np.asarray(out, dtype=np.int64) + FRAME_ID_BASE


def encoded_image_ids(session: Session, model_id: int) -> set[int]:
    """Images this model has encoded: stills with a vector, videos with frames."""
    stills = set(session.scalars(select(Embedding.image_id).where(Embedding.model_id == model_id)))
    return stills | set(session.scalars(select(Frame.image_id).where(Frame.model_id == model_id).distinct()))


def video_count(session: Session, model_id: int) -> int:
    """How many videos have frames searchable with this model."""
    return session.scalar(select(func.count(func.distinct(Frame.image_id))).where(Frame.model_id == model_id)) or 0


def video_vectors(session: Session, model_id: int, dim: int) -> dict[int, np.ndarray]:
    """Each video's mean key-frame vector for one model, unit length: what a video as a whole is like."""
    rows = session.execute(select(Frame.image_id, Frame.vector).where(Frame.model_id == model_id)
                           .order_by(Frame.image_id)).all()
    if not rows:
        return {}
    owners = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = from_blobs([r[1] for r in rows], dim)
    out = {}
    for image_id, start, count in zip(*np.unique(owners, return_index=True, return_counts=True)):
        mean = vectors[start:start + count].mean(axis=0)
        out[int(image_id)] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return out
