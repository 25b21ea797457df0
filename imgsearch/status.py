"""What a library holds, for `imgsearch status`: roots, counts, models and their indexes, the last run,
photos set aside by duplicate actions, and tags."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from imgsearch import store
from imgsearch.models import runtimes
from imgsearch.store import journal
from imgsearch.store.orm import STATUS_SET_ASIDE
from imgsearch.vectors.build import build_params, index_bytes, is_fresh

RUN_FIELDS = ("status", "new", "changed", "moved", "unchanged", "removed", "skipped", "encoded", "started_at",
              "finished_at", "executor")


@dataclass(frozen=True)
class ModelStatus:
    name: str
    pretrained: str | None
    dim: int
    vectors: int
    index_spec: str | None
    index_count: int | None
    index_fresh: bool
    index_params: dict
    index_recall_at_10: float | None
    last_used_at: datetime
    checkpoint_sha256: str | None = None  # local weights: which checkpoint made the vectors
    index_ram_bytes: int = 0
    index_disk_bytes: int = 0
    exports: list[dict] = field(default_factory=list)  # {"runtime": "OpenVINO 2026.4.1 fp32", "bytes": n}: models/


@dataclass(frozen=True)
class LibraryStatus:
    """What `imgsearch status` shows."""

    path: str
    roots: list[tuple[str, int, bool]]  # (folder, images indexed under it, folder exists now)
    indexed: int
    skipped: int
    models: list[ModelStatus]
    last_run: dict | None
    set_aside: int = 0  # moved out by a duplicates action
    pending_undo: dict | None = None  # the action `dups undo` would reverse
    tags: dict[str, int] = field(default_factory=dict)  # label -> images carrying it
    database: str = ""  # the SQLite file, or the server's URL without its password


def library_status(sessions: sessionmaker[Session], path: Path, index_dir: Path, database: str = "",
                   exports_dir: Path | None = None, writer_running: bool = True) -> LibraryStatus:
    """Roots, counts, models with their indexes and exports, last run (`writer_running` False: a run the database
    says is running is not, any more)."""
    with sessions() as session:
        roots = [(r, store.count_images(session, r).get("indexed", 0), Path(r).is_dir())
                 for r in store.list_roots(session)]
        counts = store.count_images(session)
        models = [_model_status(session, m, index_dir, exports_dir) for m in store.list_models(session)]
        run = store.last_run(session)
        last = None if run is None else {k: getattr(run, k) for k in RUN_FIELDS} | {"roots": json.loads(run.roots)}
        if last and last["status"] == "running" and not writer_running:
            last["status"] = "stopped"  # killed (power cut, kill -9): it finished nothing; the next index goes on
        tags = store.tag_counts(session)
        pending = journal.pending_action(session)
    return LibraryStatus(str(path), roots, counts.get("indexed", 0), counts.get("skipped", 0), models, last,
                         counts.get(STATUS_SET_ASIDE, 0), pending, tags, database)


def _model_status(session: Session, m, index_dir: Path, exports_dir: Path | None) -> ModelStatus:
    build = store.latest_build(session, m.id)
    ram, disk = index_bytes(build, m.dim, index_dir) if build else (0, 0)
    exports = [{"runtime": what, "bytes": size}
               for what, size in (runtimes.exports_of(exports_dir, m.key) if exports_dir is not None else [])]
    return ModelStatus(m.name, m.pretrained, m.dim, store.count_vectors(session, m.id, frames=True),
                       build.spec if build else None, build.count if build else None,
                       is_fresh(session, m, index_dir), build_params(build) if build else {},
                       build.recall_at_10 if build else None, m.last_used_at, m.checkpoint_sha256, ram, disk, exports)
