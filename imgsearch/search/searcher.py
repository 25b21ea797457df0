"""One search end to end: query vectors (text cache first), filters, exact ranking, paging and order."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.orm import Session, sessionmaker

from imgsearch import store
from imgsearch.config import SearchOptions
from imgsearch.filters import Filters
from imgsearch.errors import CorruptError, ImageError, NotFoundError, UsageError
from imgsearch.fs import is_inside
from imgsearch.images.decode import FileData, decode_data, default_pixel_limit, file_limit, read_file
from imgsearch.models import runtimes
from imgsearch.models.encoder import Encoder
from imgsearch.search.fetch import fetch_url
from imgsearch.search.query import Term
from imgsearch.search.ranking import check_options, combine, order, rank_ids
from imgsearch.search.result import SearchResult
from imgsearch.store import dialect
from imgsearch.store.orm import Model
from imgsearch.vectors.index import VectorIndex

TIE_LOOKAHEAD = 16  # results ranked past a page, so that equal scores across its end are listed alike on every page
SORTED_DEPTH = 1000  # results ordered by date or path: the best this many by score (fewer above a min_score cutoff)
CACHE_WRITE_WAIT_MS = 200  # a search waits this long for an indexer's write lock, then skips caching


def search(sessions: sessionmaker[Session], session: Session, row: Model, encoder: Callable[[], Encoder],
           index: Callable[[], VectorIndex], terms: Sequence[Term], options: SearchOptions,
           allow_urls: bool = True) -> list[SearchResult]:
    """Rank the library for a combination of text and image terms, with filters and paging, reading in `session`
    (one pooled connection for the whole search: on PostgreSQL each session costs round trips of its own, more
    than the search's few queries); `sessions` for the cache's writes.

    `encoder` and `index` are called only when needed: a cached text query loads no model. Query images
    given by file or id are left out of their own results. `allow_urls` False refuses URL terms (a server
    does not fetch addresses for its remote clients).
    """
    options = check_options(options)
    if not allow_urls and any(t.kind == "url" for t in terms):
        raise UsageError("image URLs are not fetched here: download the image and give it as a file", "query")
    query = combine(query_vectors(sessions, row, encoder, terms, session), [t.weight for t in terms])
    _check_filters(session, options.filters)
    exclude = {i for t in terms if t.kind == "image"
               for i in [store.image_id_for_path(session, os.path.abspath(Path(t.value).expanduser()))]
               if i is not None} | {int(t.value) for t in terms if t.kind == "photo"} \
        | {int(t.value) for t in terms if t.kind == "marked" and t.weight < 0}  # liked photos stay, unliked go
    exclude |= set(store.frame_index_ids(session, row.id, sorted(exclude)).tolist())  # a video's own frames
    allowed = store.filter_index_ids(session, row.id, options.filters) if options.filters.active() else None
    ann = index()
    if options.offset >= len(ann):
        return []  # past the last image: nothing to rank (and no depth of 10**11 asked of FAISS)
    frames: dict[int, tuple[int, int]] = {}

    def owners(ids: Sequence[int]) -> dict[int, int]:
        found = store.frame_owners(session, ids)
        frames.update(found)
        return {i: image_id for i, (image_id, _) in found.items()}

    # by score: a few past the page (a run of equal scores, exact copies, that crosses the page's end is ordered
    # whole); by date or path: the best SORTED_DEPTH by score (or a page's k, when larger) ordered as one list,
    # then paged, so that the order runs on from one page to the next and ends with that list
    depth = options.offset + options.k + TIE_LOOKAHEAD if options.sort == "score" else max(SORTED_DEPTH, options.k)
    hits = rank_ids(ann, query, min(depth, len(ann)), allowed, exclude, options.min_score, owners)
    times = {frames[i][0]: frames[i][1] for i, _ in hits if i in frames}
    hits = [(frames[i][0] if i in frames else i, score) for i, score in hits]
    paths = store.paths_for(session, [i for i, _ in hits])
    hits = order(order(hits, paths, "score"), paths, options.sort, lambda ids: store.dates_for(session, ids))
    hits = hits[options.offset: options.offset + options.k]
    return [SearchResult(rank=n, score=s, path=paths[i], id=i, time_ms=times.get(i)) for n, (i, s) in enumerate(hits, 1)]


def _check_filters(session: Session, filters: Filters) -> None:
    """A filter that can match nothing in this library is a mistake worth naming, not an empty result."""
    folder = filters.get("folder")
    if folder:
        roots = store.list_roots(session)
        if not any(is_inside(folder, r) or is_inside(r, folder) for r in roots):
            raise UsageError(f"{folder} is not inside any indexed folder, so nothing can match "
                             f"{{param}} (indexed: {', '.join(roots) or 'none yet'})", "folder")
    if "tag" in filters:
        known = {label.lower(): label for label in store.tag_counts(session)}
        unknown = [t for t in filters["tag"] if t.lower() not in known]
        if unknown:
            hint = (f"the tags in this library are {', '.join(sorted(known.values()))}" if known
                    else "no image is tagged yet: label them first with `imgsearch tag` and the labels you want "
                         "(`imgsearch tag -h` shows how)")
            raise UsageError(f"no image is tagged {', '.join(map(repr, unknown))} ({{param}}): {hint}", "tag")


def query_vectors(sessions: sessionmaker[Session], row: Model, encoder: Callable[[], Encoder],
                  terms: Sequence[Term], session: Session) -> np.ndarray:
    """One vector per term; cached texts need no model, so a repeated query starts instantly. Read in `session`;
    texts embedded now are cached in a session of their own (a write, best effort)."""
    texts = [t.value for t in terms if t.kind == "text"]
    photos = [int(t.value) for t in terms if t.kind in ("photo", "marked")]
    known, stale = store.cached_text_vectors(session, row.id, texts, row.dim) if texts else ({}, set())
    stored = store.photo_vectors(session, row.id, photos, row.dim) if photos else {}
    missing = sorted(set(photos) - set(stored))
    if missing:
        raise NotFoundError(f"no photo {missing[0]} with a vector of this model in the library", "query")
    remember: dict[str, np.ndarray | None] = {text: None for text in stale}
    new_texts = sorted(set(texts) - set(known))
    model = encoder() if new_texts or any(t.kind in ("image", "url") for t in terms) else None
    if new_texts:
        assert model is not None
        for text, text_vector in zip(new_texts, model.encode_texts(new_texts)):
            check_finite(text_vector, model, f"the text {text!r}")  # before the cache: a NaN kept there stays wrong
            known[text] = remember[text] = text_vector
    if remember:
        remember_texts(sessions, row.id, remember)

    def vector(t: Term) -> np.ndarray:
        if t.kind == "text":
            return known[t.value]
        if t.kind in ("photo", "marked"):
            return stored[int(t.value)]
        if t.kind == "vector":
            return np.asarray(t.vector, dtype=np.float32)
        assert model is not None  # loaded above for image terms
        return check_finite(model.encode_pixels(query_pixels(t, model)[None])[0], model, "the query image")

    return np.stack([vector(t) for t in terms])


def check_finite(vector: np.ndarray, model: Encoder, what: str) -> np.ndarray:
    """A vector with NaN or infinity in it ranks nothing ("No results"): it means damaged weights, said as such."""
    if np.isfinite(vector).all():
        return vector
    folder = model.folder
    where = f"the exported model in {folder} is damaged: " if folder is not None else ""
    raise CorruptError(f"the model gave a vector with NaN or infinity for {what}: {where}{runtimes.damage_fix(folder)}.")


def remember_texts(sessions: sessionmaker[Session], model_id: int, vectors: dict[str, np.ndarray | None]) -> None:
    """Update the text cache; best effort: a read-only or busy library still answers the search."""
    with sessions() as session:
        try:
            # the indexer may hold the write lock: wait briefly, not as long as its own writes wait (and
            # restore the wait before the connection goes back to the pool, where another thread takes it)
            with dialect.lock_wait(session, CACHE_WRITE_WAIT_MS):
                store.remember_text_vectors(session, model_id, vectors)
                session.flush()
            session.commit()
        except SAOperationalError:
            session.rollback()


def image_vector(data: bytes, encoder: Encoder, max_pixels: int) -> np.ndarray:
    """The embedding of an image given as bytes (an upload); a usage error naming why it cannot be used."""
    if len(data) > file_limit(max_pixels):
        raise UsageError(f"the image is {len(data):,} bytes, over the {file_limit(max_pixels):,} allowed", "image")
    try:
        pixels = decode_data(FileData("upload", bytearray(data), len(data), 0), encoder.info.geometry,
                             max_pixels).pixels
    except ImageError as exc:
        raise UsageError(f"the image cannot be used: {exc.message}", "image") from exc
    return encoder.encode_pixels(pixels[None])[0]


def query_pixels(term: Term, encoder: Encoder) -> np.ndarray:
    """The model-sized pixels of an image term (a file, or an http(s) URL)."""
    if term.kind == "url":
        data = fetch_url(term.value)
    else:
        path = Path(term.value).expanduser()
        if not path.is_file():
            raise UsageError(f"query image {path} does not exist or is not a file")
        data = read_file(str(path))
    try:
        return np.asarray(decode_data(data, encoder.info.geometry, default_pixel_limit(1)).pixels)
    except ImageError as exc:
        raise UsageError(f"query image {term.value} cannot be used: {exc.message}") from exc
