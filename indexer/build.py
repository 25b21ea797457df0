"""Build the FAISS index of one model from the DB vectors (the source of truth) and record the build."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.orm import Session, sessionmaker

from imgsearch import store
from imgsearch.orm import Model
from imgsearch.vector_index import EXACT_SPEC, VectorIndex


def index_filename(model_id: int, generation: int) -> str:
    """File names carry the generation: a file can never be mistaken for a later state of the DB."""
    return f"model-{model_id}-gen-{generation}.faiss"


def load_fresh(session: Session, model: Model, index_dir: Path) -> VectorIndex | None:
    """The saved index if it matches the model's current vectors, else None."""
    build = store.latest_build(session, model.id)
    if build is None or build.generation != model.generation:
        return None
    path = index_dir / build.filename
    try:
        index = VectorIndex.load(path, build.spec)
    except (OSError, RuntimeError):  # missing or unreadable file: rebuild, never trust
        return None
    return index if len(index) == build.count and index.dim == model.dim else None


def build(session: Session, model: Model) -> tuple[VectorIndex, float]:
    """A new exact index of every vector the model has in the DB, and the seconds it took."""
    start = time.perf_counter()
    ids, vectors = store.load_vectors(session, model.id, model.dim)
    index = VectorIndex.build(model.dim, ids, vectors, EXACT_SPEC)
    return index, time.perf_counter() - start


def save(sessions: sessionmaker[Session], model_id: int, index: VectorIndex, generation: int,
         build_s: float, index_dir: Path) -> None:
    """Write the index file atomically, then record it; older files of the model are deleted."""
    index_dir.mkdir(parents=True, exist_ok=True)
    name = index_filename(model_id, generation)
    index.save(index_dir / name)
    with sessions.begin() as session:
        model = session.get(Model, model_id)
        if model is None or model.generation != generation:
            return  # vectors changed while we built: the next reader rebuilds
        kept = store.record_build(session, model_id, index.spec, len(index), generation, name, build_s)
        stale = store.prune_builds(session, model_id, kept.id)
    for old in stale:
        if old != name:
            (index_dir / old).unlink(missing_ok=True)


def ensure_index(sessions: sessionmaker[Session], model_id: int, index_dir: Path,
                 strict: bool = True) -> VectorIndex:
    """The model's index: loaded when fresh, else rebuilt from the DB and saved.

    With strict=False (searches) a failed save is ignored: a read-only library or a full disk
    still answers from the in-memory index.
    """
    with sessions() as session:
        model = session.get(Model, model_id)
        assert model is not None
        index = load_fresh(session, model, index_dir)
        if index is not None:
            return index
        generation = model.generation
        index, build_s = build(session, model)
    try:
        save(sessions, model_id, index, generation, build_s, index_dir)
    except (OSError, SAOperationalError):
        if strict:
            raise
    return index
