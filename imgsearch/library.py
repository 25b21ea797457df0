"""A library folder (SQLite DB + FAISS indexes + manifest) and the public Python API over it."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from imgsearch import db, store
from imgsearch.config import (DB_FILENAME, INDEX_DIRNAME, MANIFEST_FILENAME, IndexSettings, ModelSpec,
                              default_library_dir)
from imgsearch.encoder import Encoder
from imgsearch.errors import (ImgSearchError, LibraryNotFoundError, ModelMismatchError, NotALibraryError,
                              NothingIndexedError, UsageError)
from imgsearch.images import decode_file, default_pixel_limit
from imgsearch.orm import Model
from imgsearch.search import SearchResult, check_k, check_text, rank
from indexer.build import build_params, ensure_index, is_fresh
from indexer.pipeline import Progress, RunReport, check_roots, run_index

MANIFEST_FORMAT = 1
LOCK_FILENAME = "index.lock"

EncoderLoader = Callable[[ModelSpec], Encoder]


def _load_open_clip(spec: ModelSpec) -> Encoder:
    from imgsearch.encoder import OpenClipEncoder

    return OpenClipEncoder.load(spec)


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


@dataclass(frozen=True)
class LibraryStatus:
    """What `imgsearch status` shows."""

    path: str
    roots: list[tuple[str, int, bool]]  # (folder, images indexed under it, folder exists now)
    indexed: int
    skipped: int
    models: list[ModelStatus]
    last_run: dict | None


class Library:
    """An imgsearch library. `Library.open(dir)` then `search_text`, `search_image`, `index`, `status`."""

    def __init__(self, path: Path, encoder_loader: EncoderLoader | None = None) -> None:
        self.path = path
        self.db_path = path / DB_FILENAME
        self.index_dir = path / INDEX_DIRNAME
        self.engine = db.make_engine(self.db_path)
        self.sessions = db.session_factory(self.engine)
        self._load_encoder = encoder_loader or _load_open_clip
        self._encoders: dict[str, Encoder] = {}

    # --- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path | None = None, create: bool = False,
             encoder_loader: EncoderLoader | None = None) -> "Library":
        """Open the library at `path` (default: IMGSEARCH_LIBRARY or the user data dir)."""
        path = Path(path).expanduser() if path is not None else default_library_dir()
        path = path.absolute()
        if not (path / MANIFEST_FILENAME).is_file():
            if not create:
                raise LibraryNotFoundError(
                    f"no imgsearch library at {path}: run `imgsearch index FOLDER` to create one "
                    "(or pass --library DIR / set IMGSEARCH_LIBRARY to use another).")
            _create(path)
        lib = cls(path, encoder_loader)
        if not lib.db_path.exists():
            raise LibraryNotFoundError(f"{lib.db_path} is missing: the library at {path} is incomplete. "
                                       "Move the folder away and run `imgsearch index FOLDER` again.")
        db.check_schema(lib.engine)
        return lib

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    # --- models and encoders ---------------------------------------------------------------------

    def encoder(self, spec: ModelSpec) -> Encoder:
        """The encoder for a spec, loaded once per Library."""
        key = f"{spec.name}|{spec.pretrained}"
        if key not in self._encoders:
            self._encoders[key] = self._load_encoder(spec)
        return self._encoders[key]

    def _search_model(self, spec: ModelSpec | None) -> tuple[Model, Encoder]:
        """The model to search with: the given one, else the most recently indexed; checks its vectors."""
        with self.session() as session:
            models = [m for m in store.list_models(session) if store.count_vectors(session, m.id)]
        if not models:
            raise NothingIndexedError(f"nothing is indexed in {self.path} yet: run `imgsearch index FOLDER` first.")
        if spec is None:
            model = models[0]
            encoder = self.encoder(ModelSpec(model.name, model.pretrained))
            if encoder.info.key != model.key:
                raise ModelMismatchError(
                    f"the weights of {model.name} changed since this library was indexed with them: "
                    "run `imgsearch index` again to re-encode, or restore the original checkpoint.")
            return model, encoder
        encoder = self.encoder(spec)
        for model in models:
            if model.key == encoder.info.key:
                return model, encoder
        raise NothingIndexedError(
            f"no images are indexed with model {spec.name}" + (f" ({spec.pretrained})" if spec.pretrained else "")
            + f": run `imgsearch index --model {spec.name}` first, or leave out --model to use the library's.")

    # --- indexing --------------------------------------------------------------------------------

    def index(self, roots: Sequence[str | Path] = (), spec: ModelSpec | None = None,
              settings: IndexSettings = IndexSettings(), progress: Progress | None = None) -> RunReport:
        """Index folders (default: every root the library knows) with one model; one indexer at a time.

        Without a spec, the library's most recently used model is kept (else the default model).
        """
        with self.session() as session:
            known_roots = store.list_roots(session)
            if spec is None:
                models = store.list_models(session)
                spec = ModelSpec(models[0].name, models[0].pretrained) if models else ModelSpec()
        if roots:
            folders = check_roots(roots)
        else:
            if not known_roots:
                raise UsageError("no folders given and the library has none yet: imgsearch index FOLDER")
            folders = [r for r in known_roots if Path(r).is_dir()]
        offline = [r for r in known_roots if not roots and r not in folders]
        with self._index_lock():
            encoder = self.encoder(spec)
            report = run_index(self.sessions, encoder, folders, self.index_dir, settings, progress)
        report.warnings.extend(f"{r} is not reachable (unmounted?): its images were kept as they are"
                               for r in offline)
        return report

    @contextmanager
    def _index_lock(self) -> Iterator[None]:
        """An exclusive flock: released by the kernel when the process dies, so it can never go stale."""
        lock_path = self.path / LOCK_FILENAME
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                raise ImgSearchError(f"another indexer is already running on {self.path} ({holder}): "
                                     "wait for it to finish, or stop it.") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
            yield
        finally:
            os.close(fd)

    # --- searching -------------------------------------------------------------------------------

    def search_text(self, query: str, k: int = 10, model: ModelSpec | None = None) -> list[SearchResult]:
        """The k images that best match a text."""
        text, k = check_text(query), check_k(k)
        row, encoder = self._search_model(model)
        return self._rank(row, encoder.encode_texts([text]), k)

    def search_image(self, path: str | Path, k: int = 10, model: ModelSpec | None = None) -> list[SearchResult]:
        """The k images most like an image file (the file itself is left out when it is in the library)."""
        k = check_k(k)
        query_path = Path(path).expanduser()
        if not query_path.is_file():
            raise UsageError(f"query image {query_path} does not exist or is not a file")
        row, encoder = self._search_model(model)
        decoded = decode_file(str(query_path), encoder.info.geometry, default_pixel_limit(1))
        vector = encoder.encode_pixels(decoded.pixels[None])
        with self.session() as session:
            own = store.image_id_for_path(session, os.path.abspath(query_path))
        return self._rank(row, vector, k, exclude={own} if own is not None else set())

    def _rank(self, model: Model, vector: np.ndarray, k: int, exclude: Collection[int] = ()) -> list[SearchResult]:
        index = ensure_index(self.sessions, model.id, self.index_dir, strict=False)
        with self.session() as session:
            return rank(index, vector, k, lambda ids: store.paths_for(session, ids), exclude)

    # --- status ----------------------------------------------------------------------------------

    def status(self) -> LibraryStatus:
        """Roots, counts, models and their indexes, last run."""
        with self.session() as session:
            roots = [(r, store.count_images(session, r).get("indexed", 0), Path(r).is_dir())
                     for r in store.list_roots(session)]
            counts = store.count_images(session)
            models = []
            for m in store.list_models(session):
                build = store.latest_build(session, m.id)
                fresh = is_fresh(session, m, self.index_dir)
                models.append(ModelStatus(m.name, m.pretrained, m.dim, store.count_vectors(session, m.id),
                                          build.spec if build else None, build.count if build else None,
                                          fresh, build_params(build) if build else {},
                                          build.recall_at_10 if build else None, m.last_used_at))
            run = store.last_run(session)
            last = None if run is None else {
                k: getattr(run, k) for k in ("status", "new", "changed", "moved", "unchanged", "removed",
                                             "skipped", "encoded", "started_at", "finished_at")}
            if last:
                last["roots"] = json.loads(run.roots)
        return LibraryStatus(str(self.path), roots, counts.get("indexed", 0), counts.get("skipped", 0), models, last)

    def skipped(self) -> list[tuple[str, str]]:
        """(path, reason) of every file that could not be indexed."""
        with self.session() as session:
            return store.skipped_images(session)


def _create(path: Path) -> None:
    """Make a new library folder; refuses a non-empty folder that is not a library."""
    if path.exists() and not path.is_dir():
        raise NotALibraryError(f"{path} is a file, not a library folder: pass --library DIR with a folder path.")
    if path.is_dir() and any(path.iterdir()):
        raise NotALibraryError(
            f"{path} is not empty and holds no imgsearch library ({MANIFEST_FILENAME} missing): "
            "pass an empty or new folder to --library.")
    path.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(path / DB_FILENAME)
    try:
        db.upgrade_to_head(engine)
    finally:
        engine.dispose()
    manifest = {"format": MANIFEST_FORMAT, "created_at": datetime.now().astimezone().isoformat(),
                "created_by": "imgsearch"}
    tmp = path / f".{MANIFEST_FILENAME}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path / MANIFEST_FILENAME)  # written last: a half-created library is never taken for one
