"""Build or update the FAISS index of one model from the DB vectors (the source of truth); record it.

An index saved at generation g is brought up to date incrementally: ids gone from the DB are
removed, vectors written after g are (re-)added, nothing is retrained. It is rebuilt (and for
IVF-PQ retrained and re-tuned) when missing, unreadable, of the wrong kind for the library's
size, or outgrown (see params.needs_retrain).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.orm import Session, sessionmaker

from imgsearch import store
from imgsearch.store.orm import FRAME_ID_BASE, IndexBuild, Model
from imgsearch.vectors import ondisk
from imgsearch.vectors.index import MemoryIndex, VectorIndex
from imgsearch.vectors.ondisk import OnDiskIndex
from imgsearch.vectors.params import IndexSpec, choose_index_spec, needs_retrain
from imgsearch.vectors.tuning import tune
from imgsearch.workers import KeyedLocks

log = logging.getLogger(__name__)
RECALL_TARGET = 0.97  # on the tuning sample: a margin so unseen queries still get >= 0.95


@dataclass
class Built:
    index: VectorIndex
    generation: int
    build_s: float
    recall_at_10: float | None
    trained_count: int
    incremental: bool = False  # vectors added to (or removed from) an index built before, not a build


def index_filename(model_id: int, generation: int) -> str:
    """File names carry the generation: a file can never be mistaken for a later state of the DB."""
    return f"model-{model_id}-gen-{generation}.faiss"


def _load(build: IndexBuild, model: Model, index_dir: Path) -> VectorIndex | None:
    path = index_dir / build.filename
    try:
        index = OnDiskIndex.open(path) if path.is_dir() else MemoryIndex.load(path)
    except (ValueError, OSError):  # missing, torn or foreign file: rebuild, never trust
        return None
    return index if len(index) == build.count and index.dim == model.dim else None


def is_fresh(session: Session, model: Model, index_dir: Path) -> bool:
    """Cheap check (no load): the latest build matches the model's vectors and its file (or folder) exists."""
    build = store.latest_build(session, model.id)
    return build is not None and build.generation == model.generation and (index_dir / build.filename).exists()


def _above(changed: np.ndarray, have: np.ndarray) -> bool:
    """Whether every changed id is above every id the index has, stills and video frames each in their own range
    (new rows get ids above the others'): then none of them is in it."""
    for low, high in ((0, FRAME_ID_BASE), (FRAME_ID_BASE, np.iinfo(np.int64).max)):
        new = changed[(changed >= low) & (changed < high)]
        held = have[(have >= low) & (have < high)]
        if len(new) and len(held) and new.min() <= held.max():
            return False
    return True


def _update(session: Session, model: Model, since: int, build: IndexBuild, index: VectorIndex) -> Built:
    """The index (in place) brought to the model's vectors: those written since generation `since` are (re)added,
    those gone are removed. While a library only grows (an indexer adding photos: new ids, above the index's), that is
    read from the vectors written since (an indexed column) and a count; otherwise every id is compared, which
    costs a read of all of them (0.3 s and more at 200,000)."""
    start = time.perf_counter()
    changed = store.vector_ids(session, model.id, since_generation=since, frames=True)
    have = index.ids()
    if _above(changed, have) and store.count_vectors(session, model.id, frames=True) == len(have) + len(changed):
        remove, add = changed[:0], changed  # only new photos since: nothing to compare
    else:
        in_db = store.vector_ids(session, model.id, frames=True)
        remove = np.union1d(np.setdiff1d(have, in_db), np.intersect1d(changed, have))
        add = np.union1d(np.setdiff1d(in_db, have), changed)
    index.remove(remove)
    vectors = store.vectors_for(session, model.id, add.tolist(), model.dim)
    index.add(add, np.stack([vectors[i] for i in add.tolist()]) if len(add) else np.zeros((0, model.dim)))
    return Built(index, model.generation, time.perf_counter() - start, build.recall_at_10, build.trained_count,
                 incremental=True)


def _build(session: Session, model: Model, index_dir: Path, memory_budget: int | None) -> Built:
    start = time.perf_counter()
    n = store.count_vectors(session, model.id, frames=True)
    spec = choose_index_spec(n, model.dim, memory_budget)
    if spec.kind == "ondisk":
        return _build_ondisk(session, model, index_dir, spec, n, memory_budget, start)
    ids, vectors = store.load_vectors(session, model.id, model.dim, frames=True)
    train = None
    if spec.kind != "exact":
        rows = np.random.default_rng(0).choice(len(ids), size=spec.train_size, replace=False)
        train = vectors[np.sort(rows)]
    index = MemoryIndex.build(model.dim, ids, vectors, spec.factory, train)
    recall = tune(index, ids, vectors, RECALL_TARGET) if spec.kind != "exact" else 1.0
    index.params["memory_budget"] = memory_budget
    index.params["trained_count"] = len(ids)  # what it was built for, as a held index is asked before a rebuild
    return Built(index, model.generation, time.perf_counter() - start, recall, len(ids))


def _build_ondisk(session: Session, model: Model, index_dir: Path, spec: IndexSpec, n: int,
                  memory_budget: int | None, start: float) -> Built:
    """Stream the vectors from the database twice: a training sample, then the shards (never all in RAM)."""
    share = spec.train_size / max(1, n)
    rng = np.random.default_rng(0)
    train = np.concatenate([v[rng.random(len(v)) < share] for _, v in store.iter_vectors(session, model.id, model.dim)])
    folder = index_dir / index_filename(model.id, model.generation)
    index = ondisk.build_into_place(folder, model.dim, spec.factory, train,
                                    store.iter_vectors(session, model.id, model.dim), n,
                                    rerank_in_ram=spec.rerank == "ram", params={"memory_budget": memory_budget})
    recall = tune(index, index.rerank_ids, index.rerank, RECALL_TARGET)
    return Built(index, model.generation, time.perf_counter() - start, recall, n)


def refresh(session: Session, model: Model, index_dir: Path, rebuild: bool = False,
            memory_budget: int | None = None, cached: tuple[int, VectorIndex] | None = None,
            defer: Callable[[], None] | None = None) -> tuple[VectorIndex, Built | None]:
    """The model's index, and what was done to it (None: loaded as saved, nothing to write). `memory_budget`
    (bytes): the RAM the index may take; None keeps the one the last build was given. `cached`: (generation, index)
    held in memory, brought up to date in place when it is at least as recent as the last saved build (no file is
    read again: while an indexer commits, each search after a commit adds that commit's vectors only). `defer`:
    when a rebuild in RAM is due (the library outgrew the index), the held index is updated in place all the same
    and `defer` is called to rebuild it beside, instead of the caller waiting for it."""
    build = store.latest_build(session, model.id)
    if memory_budget is None and build is not None:
        memory_budget = build_params(build).get("memory_budget")
    previous: VectorIndex | None
    trained = build.trained_count if build is not None else 0
    held = build is not None and cached is not None and not rebuild and cached[0] >= build.generation
    if held and cached is not None:
        since, previous = cached
        trained = int(previous.params.get("trained_count") or trained)  # built since the last saved build, maybe
    else:
        since = build.generation if build is not None else 0
        previous = _load(build, model, index_dir) if build is not None and not rebuild else None
    if build is None or previous is None:
        built = _build(session, model, index_dir, memory_budget)
    elif since == model.generation:
        return previous, None
    else:
        n = store.count_vectors(session, model.id, frames=True)
        index = previous

        def outgrown() -> bool:
            return (needs_retrain(index.kind, trained, n, model.dim, memory_budget)
                    or (isinstance(index, OnDiskIndex) and index.needs_rebuild()))

        was_outgrown = outgrown()
        if not was_outgrown or (defer is not None and held):
            built = _update(session, model, since, build, previous)
            if defer is not None and held and (was_outgrown or outgrown()):  # (or the update crossed the bar)
                defer()  # (in RAM or on disk: a rebuild writes a new file or folder of its own)
        else:
            built = _build(session, model, index_dir, memory_budget)
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
            path = index_dir / old
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def ensure_index(sessions: sessionmaker[Session], model_id: int, index_dir: Path, strict: bool = True,
                 rebuild: bool = False, cached: tuple[int, VectorIndex] | None = None,
                 memory_budget: int | None = None, defer: Callable[[], None] | None = None) -> tuple[int, VectorIndex]:
    """(generation, index) of the model: `cached` when still current, else the saved index when fresh,
    else updated or rebuilt from the DB and saved.

    With strict=False (searches) a failed save is ignored: a read-only library or a full disk
    still answers from the in-memory index; and an index only updated is not saved again (while an indexer
    commits a batch a second, writing the whole index after each would cost more than the update: the indexer
    saves it when its run ends, and a process that starts before then updates the saved one as this one did).
    """
    with sessions() as session:
        model = store.get_model(session, model_id)
        assert model is not None
        if cached is not None and cached[0] == model.generation and not rebuild:
            return cached
        index, built = refresh(session, model, index_dir, rebuild, memory_budget, cached, defer)
        if built is None or (built.incremental and not strict):
            return model.generation, index
    try:
        save(sessions, model_id, built, index_dir)
    except (OSError, SAOperationalError):
        if strict:
            raise
    return built.generation, built.index


def index_bytes(build: IndexBuild, dim: int, index_dir: Path) -> tuple[int, int]:
    """(RAM, disk) bytes of a saved index, without loading it: an index in RAM takes about what its file holds; an
    on-disk one keeps its ids (and its re-rank copy, unless memory-mapped) in RAM."""
    path = index_dir / build.filename
    try:
        if not path.is_dir():
            size = path.stat().st_size
            return size, size
        disk = ondisk.folder_bytes(path)
        in_ram = json.loads((path / ondisk.META).read_text()).get("rerank_in_ram", True)
    except (OSError, ValueError):
        return 0, 0
    return build.count * IndexSpec("ondisk", build.spec, rerank="ram" if in_ram else "mmap").bytes_per_vector(dim), disk


def build_params(build: IndexBuild) -> dict:
    return json.loads(build.params or "{}")


class IndexCache:
    """Each model's index kept in memory while its vectors do not change; safe to share between threads
    (one load or update per model at a time, never two)."""

    def __init__(self, sessions: sessionmaker[Session], index_dir: Path, rebuild_beside: bool = False) -> None:
        # rebuild_beside: rebuild an outgrown index in a thread while searches go on (a long-lived process: a
        # server; a one-off search would exit before the rebuild ends, and redo it the next time)
        self._sessions, self._index_dir, self.rebuild_beside = sessions, index_dir, rebuild_beside
        self._indexes: dict[int, tuple[int, VectorIndex]] = {}
        self._lock_for = KeyedLocks()
        self._rebuilding: set[int] = set()  # models whose index is being rebuilt beside the searches (one each)
        self.rebuilt = threading.Event()  # set whenever such a rebuild has taken the old index's place
        self.rebuilds = 0  # how many times one has (answers given before may differ from the new index's)

    def loaded(self, model_id: int) -> bool:
        """Whether the model's index is in memory already (a `get` then costs a freshness check only)."""
        return model_id in self._indexes

    def get(self, model_id: int, generation: int | None = None) -> VectorIndex:
        """The model's current index (updated from the database first when its vectors changed). `generation`: the
        model's, just read by the caller, spares the database a second look when the index in memory is that one."""
        held = self._indexes.get(model_id)
        if held is not None and generation is not None and held[0] == generation:
            return held[1]
        with self._lock_for(model_id):
            current = ensure_index(self._sessions, model_id, self._index_dir, strict=False,
                                   cached=self._indexes.get(model_id),
                                   defer=(lambda: self._rebuild_beside(model_id)) if self.rebuild_beside else None)
            self._indexes[model_id] = current
            return current[1]

    def _rebuild_beside(self, model_id: int) -> None:
        """Rebuild the model's index in a thread of its own while searches go on with the one held (one rebuild
        per model at a time); once built (and saved), it takes the held one's place, and the next search adds what
        was committed meanwhile."""
        if model_id in self._rebuilding:
            return
        self._rebuilding.add(model_id)

        def work() -> None:
            try:
                built = ensure_index(self._sessions, model_id, self._index_dir, strict=False, rebuild=True)
                with self._lock_for(model_id):
                    self._indexes[model_id] = built
                    self.rebuilds += 1
                self.rebuilt.set()
            except Exception:  # the held index goes on answering; the next search that finds a rebuild due retries
                log.exception("rebuilding the index of model %s beside the searches failed", model_id)
            finally:
                self._rebuilding.discard(model_id)

        threading.Thread(target=work, name=f"index-rebuild-{model_id}", daemon=True).start()
