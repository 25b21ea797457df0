"""A library folder (SQLite DB + FAISS indexes + manifest) and the public Python API over it."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.orm import Session

from imgsearch import store
from imgsearch.store import engine as db
from imgsearch.config import (DB_FILENAME, DUP_TIERS, INDEX_DIRNAME, MANIFEST_FILENAME, DupOptions, DupThresholds,
                              IndexSettings, ModelSpec, SearchOptions, default_library_dir)
from imgsearch.dups.actions import LINK_KINDS, ActionReport, pending_action, plan_links, plan_moves, undo_last
from imgsearch.dups.actions import apply as apply_action
from imgsearch.dups.grouping import Group, TIER_RANK, describe, group_pairs
from imgsearch.models.encoder import Encoder
from imgsearch.errors import (ImageError, ImgSearchError, LibraryNotFoundError, ModelMismatchError, NotALibraryError,
                              NothingIndexedError, UsageError)
from imgsearch.search.export import export_vectors
from imgsearch.search.fetch import fetch_url
from imgsearch.images.decode import decode_data, default_pixel_limit, read_file
from imgsearch.store.orm import STATUS_SET_ASIDE, Model
from imgsearch.vectors.index import VectorIndex
from imgsearch.models.zeroshot import DEFAULT_TEMPLATES, check_templates, label_vectors, logit_scale_of, probabilities
from imgsearch.search.query import Term, check_text, combine
from imgsearch.search.ranking import SearchResult, check_options, order, rank_ids
from imgsearch.vectors.build import build_params, ensure_index, is_fresh
from imgsearch.dups.evidence import gather
from imgsearch.progress import Progress
from indexer.pipeline import RunReport, check_roots, run_index

MANIFEST_FORMAT = 1
CACHE_WRITE_TIMEOUT_MS = 200
LOCK_FILENAME = "index.lock"

EncoderLoader = Callable[[ModelSpec], Encoder]


def _load_open_clip(spec: ModelSpec) -> Encoder:
    from imgsearch.models.encoder import OpenClipEncoder

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
    checkpoint_sha256: str | None = None  # local weights: which checkpoint made the vectors


@dataclass
class DupReport:
    """What `imgsearch dups` found, and how."""

    groups: list[Group]
    thresholds: DupThresholds
    hashed: int  # photos hashed in this run (the rest came from the library)
    unreadable: list[tuple[str, str]]  # (path, reason): could not be hashed now
    rescanned: int  # photos searched for candidates in this run
    full_scan: bool
    refused_by_cap: int  # links not followed: the group would pass --max-group
    refused_as_chain: int  # similar links not followed: the group would hold dissimilar photos
    elapsed_s: float


@dataclass(frozen=True)
class LibraryStatus:
    """What `imgsearch status` shows."""

    path: str
    roots: list[tuple[str, int, bool]]  # (folder, images indexed under it, folder exists now)
    indexed: int
    skipped: int
    models: list[ModelStatus]
    last_run: dict | None
    set_aside: int = 0  # moved out by `dups --move-to`
    pending_undo: dict | None = None  # the action `dups undo` would reverse
    tags: dict[str, int] = field(default_factory=dict)  # label -> images carrying it


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
        self._indexes: dict[int, tuple[int, VectorIndex]] = {}  # model id -> (generation, loaded index)

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
            with writing(path):
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
        with self._index_lock(), writing(self.path):
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

    def search(self, terms: Sequence[Term], options: SearchOptions = SearchOptions(),
               model: ModelSpec | None = None) -> list[SearchResult]:
        """Rank the library for a combination of text and image terms, with filters and paging."""
        options = check_options(options)
        row = self._model_row(model)
        vectors = self._term_vectors(row, model, terms)
        query = combine(vectors, [t.weight for t in terms])
        with self.session() as session:
            exclude = {i for t in terms if t.kind == "image"
                       for i in [store.image_id_for_path(session, os.path.abspath(Path(t.value).expanduser()))]
                       if i is not None}
            allowed = store.filter_ids(session, options.filters) if options.filters.active() else None
        index = self._index(row.id)
        hits = rank_ids(index, query, options.offset + options.k, allowed, exclude, options.min_score)
        with self.session() as session:
            paths = store.paths_for(session, [i for i, _ in hits])
            hits = order(hits, paths, "score")[options.offset:]
            hits = order(hits, paths, options.sort, lambda ids: store.dates_for(session, ids))
        return [SearchResult(rank=n, score=s, path=paths[i], id=i) for n, (i, s) in enumerate(hits, 1)]

    def _index(self, model_id: int) -> VectorIndex:
        """The model's index, kept in memory while its vectors do not change."""
        self._indexes[model_id] = ensure_index(self.sessions, model_id, self.index_dir, strict=False,
                                               cached=self._indexes.get(model_id))
        return self._indexes[model_id][1]

    def search_text(self, query: str, k: int = 10, model: ModelSpec | None = None) -> list[SearchResult]:
        """The k images that best match a text."""
        return self.search([Term(1.0, "text", check_text(query))], SearchOptions(k=k), model)

    def search_image(self, path: str | Path, k: int = 10, model: ModelSpec | None = None) -> list[SearchResult]:
        """The k images most like an image file (the file itself is left out when it is in the library)."""
        return self.search([Term(1.0, "image", str(path))], SearchOptions(k=k), model)

    def _model_row(self, spec: ModelSpec | None) -> Model:
        """The model to search with: the given one, else the most recently indexed one with vectors."""
        with self.session() as session:
            models = [m for m in store.list_models(session) if store.has_vectors(session, m.id)]
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
            + f": run `imgsearch index --model {spec.name}` first, or leave out --model to use the library's.")

    def _checked_encoder(self, row: Model, spec: ModelSpec | None) -> Encoder:
        encoder = self.encoder(spec or ModelSpec(row.name, row.pretrained))
        if encoder.info.key != row.key:
            raise ModelMismatchError(
                f"the weights of {row.name} changed since this library was indexed with them: "
                "run `imgsearch index` again to re-encode, or restore the original checkpoint.")
        return encoder

    def _term_vectors(self, row: Model, spec: ModelSpec | None, terms: Sequence[Term]) -> np.ndarray:
        """One vector per term; cached texts need no model, so a repeated query starts instantly."""
        texts = [t.value for t in terms if t.kind == "text"]
        with self.session() as session:
            known = store.cached_text_vectors(session, row.id, texts, row.dim) if texts else {}
        remember: dict[str, np.ndarray | None] = {text: None for text in known}
        new_texts = sorted(set(texts) - set(known))
        encoder = self._checked_encoder(row, spec) if new_texts or len(texts) < len(terms) else None
        if new_texts:
            assert encoder is not None
            for text, vector in zip(new_texts, encoder.encode_texts(new_texts)):
                known[text] = remember[text] = vector
        if remember:
            self._remember_texts(row.id, remember)
        return np.stack([known[t.value] if t.kind == "text" else
                         encoder.encode_pixels(self._query_pixels(t, encoder)[None])[0] for t in terms])

    def _remember_texts(self, model_id: int, vectors: dict[str, np.ndarray | None]) -> None:
        """Update the text cache; best effort: a read-only or busy library still answers the search."""
        with self.sessions() as session:
            # the indexer may hold the write lock: wait briefly, not the 10 s its writes get (set on the
            # raw connection, which stays usable whatever happens to the transaction)
            raw = session.connection().connection.dbapi_connection
            raw.execute(f"PRAGMA busy_timeout={CACHE_WRITE_TIMEOUT_MS}")
            try:
                store.remember_text_vectors(session, model_id, vectors)
                session.commit()
            except SAOperationalError:
                session.rollback()
            finally:
                raw.execute(f"PRAGMA busy_timeout={db.BUSY_TIMEOUT_MS}")

    @staticmethod
    def _query_pixels(term: Term, encoder: Encoder) -> np.ndarray:
        if term.kind == "url":
            data = fetch_url(term.value)
        else:
            path = Path(term.value).expanduser()
            if not path.is_file():
                raise UsageError(f"query image {path} does not exist or is not a file")
            data = read_file(str(path))
        try:
            return decode_data(data, encoder.info.geometry, default_pixel_limit(1)).pixels
        except ImageError as exc:
            raise UsageError(f"query image {term.value} cannot be used: {exc.message}") from exc

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
        options = check_dup_options(options)
        row = self._model_row(model)
        start = time.perf_counter()
        with writing(self.path):  # hashes and candidate pairs are cached in the library
            evidence = gather(self.sessions, row, options, progress)
        dates = {i: p.date for i, p in evidence.photos.items()}
        grouping = group_pairs(evidence.pairs, evidence.thresholds, options.tiers, evidence.vectors,
                               options.max_group, dates, options.within_s)
        groups = [describe(ids, tier, evidence.photos, evidence.vectors, evidence.codes, evidence.full_hashes,
                           evidence.thresholds, options.keep) for ids, tier in zip(grouping.groups, grouping.tiers)]
        groups.sort(key=lambda g: (TIER_RANK[g.tier], -len(g.members), g.keeper.path))
        return DupReport(groups, evidence.thresholds, evidence.hashed, evidence.unreadable, evidence.rescanned,
                         evidence.full_scan, grouping.refused_by_cap, grouping.refused_as_chain,
                         time.perf_counter() - start)

    def act_on_duplicates(self, groups: Sequence[Group], move_to: Path | None = None, link: str | None = None,
                          apply: bool = False) -> ActionReport:
        """Move every non-keeper to `move_to`, or replace exact copies by `link` ('hard'/'symbolic') links.

        Without apply, only the plan is returned. Every applied step is journaled: see undo_duplicates.
        """
        if (move_to is None) == (link is None):
            raise UsageError("choose one action: --move-to DIR or --link hard|symbolic.")
        if link is not None and link not in LINK_KINDS:
            raise UsageError(f"--link takes one of {', '.join(LINK_KINDS)}, not {link!r}.")
        with self.session() as session:
            roots = store.list_roots(session)
        refused: list[tuple[str, str]] = []
        if move_to is not None:
            kind, target, steps = "move", str(move_to.expanduser().absolute()), plan_moves(groups, move_to, roots)
        else:
            kind, target = ("hardlink" if link == "hard" else "symlink"), None
            steps, refused = plan_links(groups)
        if not apply:
            return ActionReport(kind, list(steps), [], refused, sum(_file_size(s.src) for s in steps), applied=False)
        with self._index_lock(), writing(self.path):
            report = apply_action(self.sessions, kind, steps, target)
        report.refused = refused
        return report

    def undo_duplicates(self) -> ActionReport:
        """Reverse the latest applied duplicates action exactly (files back, index entries back)."""
        with self._index_lock(), writing(self.path):
            return undo_last(self.sessions)

    # --- zero-shot labels --------------------------------------------------------------------------

    def encoder_for(self, model: ModelSpec | None) -> Encoder:
        """The given model, else the library's own (checked against its vectors)."""
        if model is not None:
            return self.encoder(model)
        return self._checked_encoder(self._model_row(None), None)

    def tag(self, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES, top: int = 3,
            min_probability: float = 0.0, model: ModelSpec | None = None) -> tuple[int, int]:
        """Label every indexed image from its stored vector (no re-encoding); writes the top labels with
        their probabilities, replacing earlier tags with these labels. Returns (images, tags written)."""
        if top < 1 or not 0 <= min_probability < 1:
            raise UsageError("--top must be at least 1 and --min-prob in [0, 1).")
        row = self._model_row(model)
        encoder = self._checked_encoder(row, model)
        label_vecs = label_vectors(encoder, labels, check_templates(templates))
        with self.session() as session:
            ids, vectors = store.load_vectors(session, row.id, row.dim)
        probs = probabilities(vectors, label_vecs, logit_scale_of(encoder)) if len(ids) else np.zeros((0, len(labels)))
        best = np.argsort(-probs, axis=1)[:, :top]
        rows = [(int(i), labels[j], float(probs[n, j])) for n, i in enumerate(ids.tolist()) for j in best[n]
                if probs[n, j] >= min_probability]
        with writing(self.path), self.sessions.begin() as session:
            store.replace_tags(session, row.id, labels, rows)
        return len(ids), len(rows)

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
                                          build.recall_at_10 if build else None, m.last_used_at,
                                          m.checkpoint_sha256))
            run = store.last_run(session)
            last = None if run is None else {
                k: getattr(run, k) for k in ("status", "new", "changed", "moved", "unchanged", "removed",
                                             "skipped", "encoded", "started_at", "finished_at")}
            if last:
                last["roots"] = json.loads(run.roots)
            tags = store.tag_counts(session)
        return LibraryStatus(str(self.path), roots, counts.get("indexed", 0), counts.get("skipped", 0), models, last,
                             counts.get(STATUS_SET_ASIDE, 0), pending_action(self.sessions), tags)

    def skipped(self) -> list[tuple[str, str]]:
        """(path, reason) of every file that could not be indexed."""
        with self.session() as session:
            return store.skipped_images(session)


_WRITE_FIXES = {
    errno.ENOSPC: "the disk is full: free some space",
    errno.EDQUOT: "the disk quota is exhausted: free some space",
    errno.EROFS: "the file system is read-only: pass --library DIR on a writable disk",
    errno.EACCES: "permission denied: make the folder writable or pass --library DIR",
    errno.EPERM: "permission denied: make the folder writable or pass --library DIR",
}


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Disk-full, read-only and locked-database failures become errors naming the folder and the fix.

    Work is committed batch by batch, so what was saved before the failure stays; the next run
    continues from there.
    """
    after = "Everything saved before this is kept: run the same command again once fixed."
    try:
        yield
    except OSError as exc:
        fix = _WRITE_FIXES.get(exc.errno or 0, exc.strerror or str(exc))
        raise ImgSearchError(f"cannot write to the library at {path}: {fix}. {after}") from exc
    except SAOperationalError as exc:
        text = str(exc.orig).lower()
        if "full" in text:
            fix = "the disk is full: free some space"
        elif "readonly" in text or "read-only" in text:
            fix = "library.db is read-only: make it writable or pass --library DIR"
        elif "locked" in text:
            fix = "the database is locked by another program: close it and try again"
        else:
            raise
        raise ImgSearchError(f"cannot write to the library at {path}: {fix}. {after}") from exc


def check_dup_options(options: DupOptions) -> DupOptions:
    """Refuse impossible duplicate options with a message naming the option."""
    bad = [t for t in options.tiers if t not in DUP_TIERS]
    if bad or not options.tiers:
        raise UsageError(f"--tier takes {', '.join(DUP_TIERS)}, not {', '.join(bad) or 'nothing'}.")
    if options.near_hamming is not None and not 0 <= options.near_hamming <= 32:
        raise UsageError("--near-hamming must be between 0 and 32 bits (of 64).")
    for name, bits in (("--near-fine", options.near_fine), ("--near-crop", options.near_crop)):
        if bits is not None and not 0 <= bits <= 128:
            raise UsageError(f"{name} must be between 0 and 128 bits (of 256).")
    for name, value in (("--near-cosine", options.near_cosine), ("--edited-cosine", options.edited_cosine),
                        ("--similar", options.similar_cosine)):
        if value is not None and not -1.0 <= value <= 1.0:
            raise UsageError(f"{name} is a cosine similarity: give a value between -1 and 1.")
    if options.max_group < 2:
        raise UsageError("--max-group must be at least 2.")
    if options.k < 1:
        raise UsageError("--neighbours must be at least 1.")
    if options.within_s is not None and options.within_s <= 0:
        raise UsageError("--within must be a positive duration, such as 30s, 10m or 2h.")
    return options


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


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
