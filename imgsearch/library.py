"""The public API: a library folder (database + FAISS indexes + manifest) and everything done with it.

`Library` is a facade: each method picks the library's model, loads what it needs once, and
delegates to the feature packages (indexer, search, dups, models). It holds no SQL, no FAISS and no
Pillow code, and one `Library` may be shared by threads (a web server's requests).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy.orm import Session

from imgsearch import folder, photos, store, timeline
from imgsearch.config import (DB_FILENAME, DB_URL_ENV, DUPS_DIRNAME, INDEX_DIRNAME, DupOptions, IndexSettings, ModelSpec,
                              SearchOptions, default_library_dir)
from imgsearch.errors import (BusyError, LibraryNotFoundError, NotFoundError, NothingIndexedError, ReadOnlyError,
                              UsageError)
from imgsearch.filters import Filters
from imgsearch.fs import is_inside
from imgsearch.models import runtimes
from imgsearch.models.choice import EncoderLoader, Encoders
from imgsearch.models.encoder import Encoder
from imgsearch.photos import THUMB_DIRNAME, PhotoInfo, Thumbnails
from imgsearch.progress import Progress, SilentProgress
from imgsearch.search import searcher, tagging
from imgsearch.search.export import export_vectors
from imgsearch.search.query import Term, check_text
from imgsearch.search.result import SearchResult
from imgsearch.store import dialect
from imgsearch.store import engine as db
from imgsearch.store.orm import Model
from imgsearch.vectors.build import IndexCache
from imgsearch.vectors.index import VectorIndex
from imgsearch.workers import in_background

if TYPE_CHECKING:  # what a search does not need is imported where it is used: a cold query imports less
    from imgsearch.dups.actions import ActionReport
    from imgsearch.dups.grouping import Group
    from imgsearch.dups.scan import DupReport
    from imgsearch.models.evaluation import EvalReport
    from imgsearch.status import LibraryStatus
    from imgsearch.store.copy import CopyReport
    from indexer.pipeline import RunReport

UPLOAD_MAX_PIXELS = 50_000_000  # an image sent by a client is decoded within this, whatever the machine's RAM
WATCH_DEBOUNCE_MS = 1600  # `watch`: file events this close together are indexed in one run (a copy of many photos)
WATCH_WAKE_MS = 200  # `watch`: the watcher says it listens after this long without events (then the first index runs)


@dataclass
class WatchRun:
    """One run of `Library.watch`: the first index, then one per batch of file changes."""

    changes: int  # file events that led to it (0: the first run)
    report: RunReport | None  # None: another indexer held the library (its changes go with the next run)
    busy: str | None = None

    def line(self) -> str:
        """The run in one line."""
        if self.report is None:
            return f"Waiting: {self.busy}; these changes are indexed with the next ones."
        return f"Indexed: {self.report.summary()}"

    @property
    def quiet(self) -> bool:
        """A later run that found nothing to do (the files that woke it need no indexing): not worth a line."""
        r = self.report
        return bool(self.changes) and r is not None and not (r.new or r.changed or r.moved or r.removed
                                                              or r.skipped_now)
__all__ = ["Library", "ForgetReport", "UpgradeReport", "upgrade"]


class Library:
    """An imgsearch library. `Library.open(dir)` then `search_text`, `search_image`, `index`, `status`."""

    def __init__(self, path: Path, encoder_loader: EncoderLoader | None = None, read_only: bool = False,
                 database: str | None = None) -> None:
        self.path = path
        self.db_path = path / DB_FILENAME
        self.database = database  # a server's URL; None: the library's own SQLite file (db_path)
        self.index_dir = path / INDEX_DIRNAME
        self.read_only = read_only  # on a read-only disk, or without write permission: search works, writes refused
        self.engine = db.make_engine(database or self.db_path, read_only and database is None)
        self.sessions = db.session_factory(self.engine)
        self._reads = db.reading_factory(self.engine)
        self.encoders = Encoders(runtimes.default_exports_dir(), encoder_loader)
        self._indexes = IndexCache(self.sessions, self.index_dir)
        self.thumbnails = Thumbnails(self.sessions, path / THUMB_DIRNAME, writable=not read_only)
        self._changes: dialect.ChangeCounter | None = None  # see revision(); made when first asked
        self._changes_asked = threading.Lock()
        self._models_seen: tuple[tuple[int, int], list[Model]] | None = None  # (revision, models with vectors)

    # --- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path | None = None, create: bool = False,
             encoder_loader: EncoderLoader | None = None, db_url: str | None = None) -> "Library":
        """Open the library at `path` (default: IMGSEARCH_LIBRARY or the user data dir). Its database is the one the
        folder remembers: its own SQLite file, or a server's; `db_url` (default: IMGSEARCH_DB_URL) names the server
        for a new library, or adds the password to the remembered URL."""
        path = Path(path).expanduser() if path is not None else default_library_dir()
        path = path.absolute()
        db_url = db_url or os.environ.get(DB_URL_ENV) or None
        read_only = path.is_dir() and not folder.writable(path)
        if not folder.is_library(path) and not (not read_only and folder.recover(path)):
            if not create:
                raise LibraryNotFoundError(
                    f"no imgsearch library at {path}: run `imgsearch index FOLDER` to create one "
                    "(or pass {param} DIR / set IMGSEARCH_LIBRARY to use another).", "library")
            with folder.writing(path):
                folder.create(path, db_url)
        lib = cls(path, encoder_loader, read_only, folder.database(path, db_url))
        if lib.database is None and not lib.db_path.exists():
            raise LibraryNotFoundError(f"{lib.db_path} is missing: the library at {path} is incomplete. "
                                       "Move the folder away and run `imgsearch index FOLDER` again.")
        db.check_schema(lib.engine)
        return lib

    def close(self) -> None:
        if self._changes is not None:
            self._changes.close()
        self.engine.dispose()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    # --- models ----------------------------------------------------------------------------------

    def encoder(self, spec: ModelSpec) -> Encoder:
        """The encoder for a spec, loaded once per Library."""
        return self.encoders.get(spec)

    def encoder_for(self, model: ModelSpec | None) -> Encoder:
        """The given model, else the library's own (checked against its vectors)."""
        if model is not None:
            return self.encoder(model)
        return self._checked_encoder(self._model_row(None), None)

    def rebuild_beside_searches(self) -> None:
        """For a long-lived process (a server): when the library has outgrown its index, searches go on with the
        one held, grown in place, while the new one is built in a thread of its own (vectors.build.IndexCache)."""
        self._indexes.rebuild_beside = True

    def _model_row(self, spec: ModelSpec | None, session: Session | None = None) -> Model:
        """The model to search with: the given one, else the most recently indexed one with vectors (read in
        `session` when given)."""
        models = self._models_with_vectors(session)
        if not models:
            raise NothingIndexedError(f"nothing is indexed in {self.path} yet: run `imgsearch index FOLDER` first.")
        if spec is None:
            return models[0]
        key = self.encoder(spec).info.key
        for model in models:
            if model.key == key:
                return model
        raise NothingIndexedError(
            f"no images are indexed with model {spec.name}" + (f" ({spec.pretrained})" if spec.pretrained else "")
            + ": index with it first, or leave out {param} to use the library's.", "model")

    def _models_with_vectors(self, session: Session | None) -> list[Model]:
        """store.models_with_vectors, read again only when the library changed since it was last read (a search
        asks it each time: a query less on the hot path of a server's searches)."""
        revision = self.revision()
        seen = self._models_seen
        if revision is not None and seen is not None and seen[0] == revision:
            return seen[1]
        with nullcontext(session) if session is not None else self.session() as reading:
            models = store.models_with_vectors(reading)
        if revision is not None:  # rows only read from (each search's session leaves them loaded when it closes)
            self._models_seen = (revision, models)
        return models

    def _checked_encoder(self, row: Model, spec: ModelSpec | None) -> Encoder:
        """The encoder for the vectors of the library's model `row` (imgsearch.models.choice decides which)."""
        return self.encoders.for_vectors(row.key, ModelSpec(row.name, row.pretrained), spec)

    def revision(self) -> tuple[int, int] | None:
        """A value that changes whenever a search's answer may have: anything committed to the library's database
        by any process, an index rebuilt beside the searches in this one. None where telling costs a round trip
        to the database (PostgreSQL): there every answer must be worked out anew."""
        with self._changes_asked:
            if self._changes is None and self.engine.dialect.name == dialect.SQLITE:
                self._changes = dialect.ChangeCounter(self.engine)
        return None if self._changes is None else (self._changes.value(), self._indexes.rebuilds)

    # --- indexing --------------------------------------------------------------------------------

    def index(self, roots: Sequence[str | Path] = (), spec: ModelSpec | None = None,
              settings: IndexSettings = IndexSettings(), progress: Progress | None = None) -> RunReport:
        """Index folders (default: every root the library knows) with one model; one indexer at a time.

        Without a spec, the library's most recently used model is kept (else the default model).
        """
        from imgsearch.dups import actions as dup_actions
        from indexer.pipeline import run_index

        if spec is None:
            with self.session() as session:
                models = store.list_models(session)
            spec = ModelSpec(models[0].name, models[0].pretrained) if models else ModelSpec()
        folders, known_roots = self._folders(roots)
        offline = [r for r in known_roots if not roots and r not in folders]
        with self._index_lock():
            settled = dup_actions.reconcile(self.sessions)  # set-aside photos are not "removed"
            notes = self._drop_library_exports()
            encoder, more = self.encoders.for_indexing(spec, settings, folders, progress)
            notes += more
            report = run_index(self.sessions, encoder, folders, self.index_dir, settings, progress)
        report.warnings[:0] = notes
        report.warnings.extend(f"settled a duplicates step an earlier run left half-way: {n}" for n in settled)
        report.warnings.extend(f"{r} is not reachable (unmounted?): its images were kept as they are"
                               for r in offline)
        return report

    def _folders(self, roots: Sequence[str | Path]) -> tuple[list[str], list[str]]:
        """(the folders to index, the roots the library knows): the given ones as their real paths, else every known
        root that is reachable now."""
        from indexer.pipeline import check_roots

        with self.session() as session:
            known_roots = store.list_roots(session)
        if roots:
            return check_roots(roots), known_roots
        if not known_roots:
            raise UsageError("no folders given and the library has none yet: give folders to index ({param}).",
                             "roots")
        return [r for r in known_roots if Path(r).is_dir()], known_roots

    def _drop_library_exports(self) -> list[str]:
        """Exports made by earlier versions inside the library (now kept once per user): removed, they are caches."""
        old = self.path / "models"
        if not old.is_dir():
            return []
        shutil.rmtree(old, ignore_errors=True)
        return [f"removed the exported models kept inside the library ({old}): they are kept once per user now, "
                f"in {self.encoders.exports_dir}"]

    def forget(self, folder: str | Path) -> ForgetReport:
        """Remove one of the library's folders and everything recorded under it: its photos' vectors, tags and
        thumbnails. The files themselves are not touched; `index FOLDER` brings them back."""
        path = os.path.realpath(Path(folder).expanduser())
        with self._index_lock():
            with self.sessions.begin() as session:
                roots = store.list_roots(session)
                chosen = [r for r in roots if r == path or r.startswith(path.rstrip(os.sep) + os.sep)]
                if not chosen:
                    inside = [r for r in roots if path.startswith(r.rstrip(os.sep) + os.sep)]
                    where = (f"it is inside {inside[0]}, one of the library's folders: forget that one" if inside
                             else "it is not one of the library's folders")
                    raise UsageError(f"cannot forget {path}: {where}. The library's folders: {', '.join(roots) or 'none'} "
                                     "(`imgsearch status` lists them).", "folder")
                gone = [f for r in chosen for f in store.forget_root(session, r)]
                keep = store.content_keys_in_use(session, [f.content_hash for f in gone if f.content_hash])
                if gone:
                    store.bump_generation(session)  # vectors were deleted: every model's index is stale
            thumbnails = self.thumbnails.drop(gone, keep)
        return ForgetReport(chosen, sum(f.status == "indexed" for f in gone), len(gone), thumbnails)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Changes to the library: refused at once when it is read-only, else write failures name the fix."""
        if self.read_only:
            raise ReadOnlyError(f"the library at {self.path} is read-only (a read-only disk, or no write permission): "
                                "it can be searched but not changed. Make it writable, or copy it to a writable "
                                "disk and give the copy as {param}.", "library")
        with folder.writing(self.path):
            yield

    @contextmanager
    def _index_lock(self) -> Iterator[None]:
        """The one-writer lock (the folder's, and the database server's), with write failures turned into errors
        that name the fix."""
        with self._writing(), folder.writer_lock(self.path), dialect.writer_lock(self.engine, self.sessions):
            yield

    # --- searching -------------------------------------------------------------------------------

    def search(self, terms: Sequence[Term], options: SearchOptions = SearchOptions(),
               model: ModelSpec | None = None, allow_urls: bool = True) -> list[SearchResult]:
        """Rank the library for a combination of text and image terms, with filters and paging (image URLs are
        fetched only when `allow_urls`)."""
        with self._reads() as session:  # one session, the model's row included: each costs round trips on PostgreSQL
            row = self._model_row(model, session)
            index: Callable[[], VectorIndex] = lambda: self._indexes.get(row.id, row.generation)  # noqa: E731
            if not self._indexes.loaded(row.id):  # a cold process: read the index while the query is embedded
                index = in_background(index)
            return searcher.search(self.sessions, session, row, lambda: self._checked_encoder(row, model), index,
                                   terms, options, allow_urls)

    def similar(self, image_id: int, options: SearchOptions = SearchOptions(),
                model: ModelSpec | None = None) -> list[SearchResult]:
        """The photos most like one of the library's (from its stored vector: nothing is decoded)."""
        return self.search([Term(1.0, "photo", str(int(image_id)))], options, model)

    def embed_image(self, data: bytes, model: ModelSpec | None = None, max_pixels: int = UPLOAD_MAX_PIXELS) -> Term:
        """A query term for an image given as bytes (an upload), decoded as safely as indexing decodes."""
        row = self._model_row(model)
        vector = searcher.image_vector(data, self._checked_encoder(row, model), max_pixels)
        return Term(1.0, "vector", "upload", vector)

    def photo(self, image_id: int) -> PhotoInfo:
        """One photo's record: path, size, dimensions, date taken, camera, GPS, tags."""
        return photos.photo(self.sessions, image_id)

    def months(self, filters: Filters | None = None) -> list[timeline.Month]:
        """Every month holding photos (that pass the filters), newest first, with its count: a timeline."""
        return timeline.months(self.sessions, filters or Filters())

    def month_photos(self, month: str, filters: Filters | None = None, offset: int = 0,
                     limit: int = 100) -> list[timeline.DatedPhoto]:
        """One month's photos ('YYYY-MM'; those that pass the filters), newest first, a page of them."""
        return timeline.photos_of(self.sessions, month, filters or Filters(), offset, limit)

    def gps_points(self, filters: Filters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, (n, 2) lat/lon) of the photos with a GPS position (that pass the filters): a map's points."""
        with self.session() as session:
            return store.gps_points(session, filters or Filters())

    def original(self, image_id: int) -> Path:
        """The photo's file, only if it really lies inside an indexed folder (else NotFoundError)."""
        return photos.original(self.sessions, image_id)

    def watch(self, roots: Sequence[str | Path] = (), spec: ModelSpec | None = None,
              settings: IndexSettings = IndexSettings(), progress: Progress | None = None,
              stop: threading.Event | None = None, debounce_ms: int = WATCH_DEBOUNCE_MS) -> Iterator[WatchRun]:
        """Index the folders (default: every root the library knows), then again each time photos or videos in them
        are added, changed, moved or deleted (changes within `debounce_ms` of each other are one run), until `stop`
        is set. Each run is an ordinary `index`: one writer at a time, resumable, only what changed is encoded.
        Yields each run; a run refused because another indexer holds the library is yielded with `busy` set, and
        its changes are indexed with the next ones."""
        from watchfiles import watch as watch_files

        from imgsearch.images.formats import EXTENSIONS

        folders = self._folders(roots)[0]  # the folders index resolves
        own = str(self.path.resolve())

        def relevant(_change: object, path: str) -> bool:  # a photo or video, or a folder (moved, deleted)
            suffix = os.path.splitext(path)[1].lower()
            return (suffix in EXTENSIONS or not suffix) and not is_inside(path, own)

        pending, started = 0, False
        # the first index runs once the watcher listens (its first yield): a file written during that index, or
        # right after it is announced, is then never missed
        for changes in watch_files(*folders, watch_filter=relevant, debounce=debounce_ms, stop_event=stop,
                                   raise_interrupt=False, yield_on_timeout=True, rust_timeout=WATCH_WAKE_MS):
            if not started:
                started = True
                yield WatchRun(0, self.index(roots, spec, settings, progress))
                continue
            if not changes:
                continue
            pending += len(changes)
            try:
                report = self.index(roots, spec, settings, progress)
            except BusyError as exc:
                yield WatchRun(pending, None, exc.message)
                continue
            yield WatchRun(pending, report)
            pending = 0

    def make_thumbnails(self, size: int = 320, progress: Progress | None = None,
                        threads: int | None = None) -> tuple[int, int, int]:
        """Make the thumbnails a viewer will ask for ahead of time: (made, already there, failed)."""
        with self._writing():
            return self.thumbnails.make_all(size, progress or SilentProgress(), threads or os.cpu_count() or 1)

    def tag_photos(self, image_ids: Sequence[int], add: Sequence[str] = (), remove: Sequence[str] = ()) -> tuple[int, int]:
        """A person's tags: give photos these labels and take those away (the model's same labels too); returns (tags
        given, photos that lost one). Labels: 1 to 100 characters; a person's tags stay when a file changes."""
        add, remove = _labels(add, "add"), _labels(remove, "remove")
        if not image_ids:
            raise UsageError("choose the photos to tag ({param})", "ids")
        if not add and not remove:
            raise UsageError("give a tag to add or to remove ({param})", "add")
        with self._writing(), self.sessions.begin() as session:
            found = list(store.indexed_paths(session, list(image_ids)))
            if len(found) != len(set(image_ids)):
                missing = sorted(set(image_ids) - set(found))
                raise NotFoundError(f"no photo {missing[0]} in this library", "ids")
            return store.give_tags(session, found, add), store.take_tags(session, found, remove)

    def tags(self) -> dict[str, int]:
        """Each tag and how many photos carry it."""
        with self.session() as session:
            return store.tag_counts(session)

    def search_text(self, query: str, k: int = 10, model: ModelSpec | None = None) -> list[SearchResult]:
        """The k images that best match a text."""
        return self.search([Term(1.0, "text", check_text(query))], SearchOptions(k=k), model)

    def search_image(self, path: str | Path, k: int = 10, model: ModelSpec | None = None) -> list[SearchResult]:
        """The k images most like an image file (the file itself is left out when it is in the library)."""
        return self.search([Term(1.0, "image", str(path))], SearchOptions(k=k), model)

    def export_vectors(self, dest: Path, fmt: str = "npy", model: ModelSpec | None = None) -> list[Path]:
        """Write one model's vectors with ids and paths for other tools (see imgsearch.search.export)."""
        row = self._model_row(model)
        with self.session() as session:
            ids, vectors = store.load_vectors(session, row.id, row.dim)
            paths = store.paths_for(session, ids.tolist())
        meta = {"name": row.name, "pretrained": row.pretrained, "key": row.key, "dim": row.dim,
                "count": len(ids), "note": "vectors are L2-normalised; score = dot product"}
        return export_vectors(dest, ids, [paths[i] for i in ids.tolist()], vectors, fmt, meta)

    # --- duplicates ------------------------------------------------------------------------------

    def duplicates(self, options: DupOptions = DupOptions(), model: ModelSpec | None = None,
                   progress: Progress | None = None) -> DupReport:
        """Groups of exact, near-exact and similar copies, each with a suggested keeper; touches no photo."""
        from imgsearch.dups import scan as dup_scan

        row = self._model_row(model)
        with self._writing():  # hashes and candidate pairs are cached in the library
            return dup_scan.find(self.sessions, row, options, self.path / DUPS_DIRNAME, progress)

    def duplicates_state(self, model: ModelSpec | None = None) -> tuple:
        """A token equal between two moments when `duplicates` would give the same answer in both (for the same
        options, with no photo file touched outside imgsearch): cheap, for keeping a costly answer while it holds."""
        row = self._model_row(model)
        with self.session() as session:
            return (row.id, *store.dups_state(session, row.id))

    def act_on_duplicates(self, groups: Sequence[Group], move_to: Path | None = None, link: str | None = None,
                          apply: bool = False, yes: bool = False) -> ActionReport:
        """Move every non-keeper to `move_to`, or replace exact copies by `link` ('hard'/'symbolic') links.

        Without apply, only the plan is returned. Every applied step is journaled: see undo_duplicates.
        Groups holding an unusually large share of the library (a threshold too loose) need `yes`.
        """
        from imgsearch.dups import actions as dup_actions

        return dup_actions.act(self.sessions, groups, move_to, link, apply, self._index_lock, yes)

    def set_aside(self, image_ids: Sequence[int], move_to: Path) -> ActionReport:
        """Move chosen photos out of the library into `move_to` (outside every indexed folder), journaled: undone by
        `undo_duplicates`, as a duplicates move is."""
        from imgsearch.dups import actions as dup_actions

        return dup_actions.set_aside(self.sessions, image_ids, move_to, self._index_lock)

    def undo_duplicates(self) -> ActionReport:
        """Reverse the latest applied duplicates action exactly (files back, index entries back)."""
        with self._index_lock():
            from imgsearch.dups import actions as dup_actions

            return dup_actions.undo_last(self.sessions)

    # --- zero-shot labels and evaluation ---------------------------------------------------------

    def tag(self, labels: Sequence[str], templates: Sequence[str] = (), top: int = 3,
            min_probability: float = 0.0, model: ModelSpec | None = None) -> tuple[int, int]:
        """Label every indexed image from its stored vector (no re-encoding); writes the top labels with
        their probabilities, replacing earlier tags with these labels. Returns (images, tags written)."""
        row = self._model_row(model)
        encoder = self._checked_encoder(row, model)
        with self._writing():
            return tagging.tag(self.sessions, row, encoder, labels, templates, top, min_probability)

    def classify(self, paths: Sequence[str], labels: Sequence[str], templates: Sequence[str] = (),
                 model: ModelSpec | None = None) -> list[tuple[str, list[tuple[str, float]] | str]]:
        """Per image file: (label, probability) best first, or why it could not be read."""
        from imgsearch.models.zeroshot import classify

        return classify(self.encoder_for(model), paths, labels, templates)

    def evaluate(self, folder_path: Path, templates: Sequence[str], k: int = 10, workers: int = -1,
                 model: ModelSpec | None = None) -> EvalReport:
        """How well the model finds a labelled folder's photos (one sub-folder per label)."""
        from imgsearch.models.evaluation import evaluate_folder

        return evaluate_folder(self.encoder_for(model), folder_path, templates, k, workers)

    # --- status ----------------------------------------------------------------------------------

    def status(self) -> LibraryStatus:
        """Roots, counts, models and their indexes, last run, and where the database is (a server URL without its
        password)."""
        from imgsearch.status import library_status

        return library_status(self.sessions, self.path, self.index_dir, dialect.describe(self.engine),
                              self.encoders.exports_dir, folder.writer_running(self.path))

    def copy_database(self, url: str, progress: Progress | None = None) -> CopyReport:
        """Copy the library's database into the empty one at `url` (PostgreSQL, or a SQLite file), verify it, and
        use it from now on; the current database is only read. No writer may run meanwhile."""
        with self._index_lock():
            target = db.make_engine(url)
            try:
                from imgsearch.store.copy import copy_database

                report = copy_database(self.engine, target, progress or SilentProgress())
            finally:
                target.dispose()
            folder.use_database(self.path, url)
        return report

    def skipped(self) -> list[tuple[str, str]]:
        """(path, reason) of every file that could not be indexed."""
        with self.session() as session:
            return store.skipped_images(session)


@dataclass(frozen=True)
class ForgetReport:
    folders: list[str]  # the library's folders removed
    photos: int  # indexed files forgotten
    files: int  # every file record removed (skipped ones too)
    thumbnails: int  # cached thumbnail files deleted


@dataclass(frozen=True)
class UpgradeReport:
    database: str
    before: str | None  # schema revision before
    after: str
    backup: Path | None  # None: nothing to do, no backup asked for, or no tool to make one (see backed_up)
    backed_up: bool = True  # False: a backup was due but no tool was at hand (PostgreSQL without pg_dump)


def upgrade(path: str | Path | None = None, make_backup: bool = True) -> UpgradeReport:
    """Back up a library's database (unless told not to), then migrate it to this version's schema (a library too
    old to open)."""
    library = (Path(path).expanduser() if path is not None else default_library_dir()).absolute()
    url = folder.database(library, os.environ.get(DB_URL_ENV) or None) if folder.is_library(library) else None
    db_path = library / DB_FILENAME
    if url is None and not db_path.is_file():
        raise LibraryNotFoundError(f"no library database at {db_path}: nothing to upgrade.")
    with folder.writing(library):
        before, after, copy = db.upgrade(url or db_path, library, make_backup)
    return UpgradeReport(db.public_url(url) if url else os.fspath(db_path), before, after, copy,
                         backed_up=copy is not None or not make_backup or before == after)


def _labels(labels: Sequence[str], param: str) -> list[str]:
    """Tags as given, trimmed, each once; UsageError for an empty or overlong one."""
    out = list(dict.fromkeys(label.strip() for label in labels))
    for label in out:
        if not 1 <= len(label) <= 100:
            raise UsageError(f"a tag has 1 to 100 characters ({{param}}: {label[:40]!r})", param)
    return out
