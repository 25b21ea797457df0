"""Build or update the FAISS index of one model from the DB vectors (the source of truth); record it.

An index saved at generation g is brought up to date incrementally: ids gone from the DB are
removed, vectors written after g are (re-)added, nothing is retrained. It is rebuilt (and for
IVF-PQ retrained and re-tuned) when missing, unreadable, of the wrong kind for the library's
size, or outgrown (see params.needs_retrain).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.orm import Session, sessionmaker

from imgsearch import store
from imgsearch.store.orm import IndexBuild, Model
from imgsearch.vectors.index import VectorIndex
from imgsearch.workers import KeyedLocks
from imgsearch.vectors.tuning import tune
from imgsearch.vectors.params import choose_index_spec, needs_retrain

RECALL_TARGET = 0.97  # on the tuning sample: a margin so unseen queries still get >= 0.95


@dataclass
class Built:
    index: VectorIndex
    generation: int
    build_s: float
    recall_at_10: float | None
    trained_count: int


def index_filename(model_id: int, generation: int) -> str:
    """File names carry the generation: a file can never be mistaken for a later state of the DB."""
    return f"model-{model_id}-gen-{generation}.faiss"


def _load(build: IndexBuild, model: Model, index_dir: Path) -> VectorIndex | None:
    try:
        index = VectorIndex.load(index_dir / build.filename)
    except (ValueError, OSError):  # missing, torn or foreign file: rebuild, never trust
        return None
    return index if len(index) == build.count and index.dim == model.dim else None


def is_fresh(session: Session, model: Model, index_dir: Path) -> bool:
    """Cheap check (no load): the latest build matches the model's vectors and its file exists."""
    build = store.latest_build(session, model.id)
    return build is not None and build.generation == model.generation and (index_dir / build.filename).is_file()


def _update(session: Session, model: Model, build: IndexBuild, index: VectorIndex) -> Built:
    start = time.perf_counter()
    in_db = store.vector_ids(session, model.id, frames=True)
    changed = store.vector_ids(session, model.id, since_generation=build.generation, frames=True)
    have = index.ids()
    index.remove(np.union1d(np.setdiff1d(have, in_db), np.intersect1d(changed, have)))
    add = np.union1d(np.setdiff1d(in_db, have), changed)
    vectors = store.vectors_for(session, model.id, add.tolist(), model.dim)
    index.add(add, np.stack([vectors[i] for i in add.tolist()]) if len(add) else np.zeros((0, model.dim)))
    return Built(index, model.generation, time.perf_counter() - start, build.recall_at_10, build.trained_count)


def _build(session: Session, model: Model) -> Built:
    start = time.perf_counter()
    ids, vectors = store.load_vectors(session, model.id, model.dim, frames=True)
    spec = choose_index_spec(len(ids), model.dim)
    train = None
    if spec.kind != "exact":
        rows = np.random.default_rng(0).choice(len(ids), size=spec.train_size, replace=False)
        train = vectors[np.sort(rows)]
    index = VectorIndex.build(model.dim, ids, vectors, spec.factory, train)
    recall = tune(index, ids, vectors, RECALL_TARGET) if spec.kind != "exact" else 1.0
    return Built(index, model.generation, time.perf_counter() - start, recall, len(ids))


def refresh(session: Session, model: Model, index_dir: Path, rebuild: bool = False) -> tuple[VectorIndex, Built | None]:
    """The model's index, and what was done to it (None: loaded as saved, nothing to write)."""
    build = store.latest_build(session, model.id)
    previous = _load(build, model, index_dir) if build is not None and not rebuild else None
    if previous is not None and build.generation == model.generation:
        return previous, None
    n = store.count_vectors(session, model.id, frames=True)
    if previous is not None and not needs_retrain(previous.kind, build.trained_count, n, model.dim):
        built = _update(session, model, build, previous)
    else:
        built = _build(session, model)
    return built.index, built


def save(sessions: sessionmaker[Session], model_id: int, built: Built, index_dir: Path) -> None:
    """Write the index file atomically, then record it; older files of the model are deleted."""
    index_dir.mkdir(parents=True, exist_ok=True)
    name = index_filename(model_id, built.generation)
    built.index.save(index_dir / name)
    with sessions.begin() as session:
        model = store.get_model(session, model_id)
        if model is None or model.generation != built.generation:
            return  # vectors changed while we built: the next reader updates again
        kept = store.record_build(session, model_id, built.index.spec, len(built.index), built.generation, name,
                                  built.build_s, built.index.params, built.recall_at_10, built.trained_count)
        stale = store.prune_builds(session, model_id, kept.id)
    for old in stale:
        if old != name:
            (index_dir / old).unlink(missing_ok=True)


def ensure_index(sessions: sessionmaker[Session], model_id: int, index_dir: Path, strict: bool = True,
                 rebuild: bool = False, cached: tuple[int, VectorIndex] | None = None) -> tuple[int, VectorIndex]:
    """(generation, index) of the model: `cached` when still current, else the saved index when fresh,
    else updated or rebuilt from the DB and saved.

    With strict=False (searches) a failed save is ignored: a read-only library or a full disk
    still answers from the in-memory index.
    """
    with sessions() as session:
        model = store.get_model(session, model_id)
        assert model is not None
        if cached is not None and cached[0] == model.generation and not rebuild:
            return cached
        index, built = refresh(session, model, index_dir, rebuild)
        if built is None:
            return model.generation, index
    try:
        save(sessions, model_id, built, index_dir)
    except (OSError, SAOperationalError):
        if strict:
            raise
    return built.generation, built.index


def build_params(build: IndexBuild) -> dict:
    return json.loads(build.params or "{}")


class IndexCache:
    """Each model's index kept in memory while its vectors do not change; safe to share between threads
    (one load or update per model at a time, never two)."""

    def __init__(self, sessions: sessionmaker[Session], index_dir: Path) -> None:
        self._sessions, self._index_dir = sessions, index_dir
        self._indexes: dict[int, tuple[int, VectorIndex]] = {}
        self._lock_for = KeyedLocks()

    def get(self, model_id: int) -> VectorIndex:
        """The model's current index (updated from the database first when its vectors changed)."""
        with self._lock_for(model_id):
            current = ensure_index(self._sessions, model_id, self._index_dir, strict=False,
                                   cached=self._indexes.get(model_id))
            self._indexes[model_id] = current
            return current[1]
