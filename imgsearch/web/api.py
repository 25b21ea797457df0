"""The JSON API, /api/v1: search (text, upload, similar photos), photos and their files, duplicates and their
actions, status, tags, background re-scans. Everything goes through the same public API the CLI uses."""

from __future__ import annotations

import base64
import io
import json
import re
import shlex
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi import Path as InPath
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from imgsearch import (FILTERS, DupOptions, Filters, Library, NotFoundError, SearchOptions, Term, UsageError,
                       feedback_terms, parse_query, split_filters)
from imgsearch.config import MAX_K, SORTS
from imgsearch.errors import render as render_params
from imgsearch.progress import Progress
from imgsearch.web.answers import keep
from imgsearch.web.jobs import Jobs
from imgsearch.web.uploads import Uploads

if TYPE_CHECKING:
    from imgsearch.dups.scan import DupReport

PREFIX = "/api/v1"
PHOTO_TERM = re.compile(r"^like:([0-9]+)$")  # in the query box: the photo with this id (the "similar" button)
MAX_ID = 2**63 - 1  # ids are SQL BIGINTs: a larger number names no photo, and must not reach the database
ImageId = Annotated[int, InPath(ge=1, le=MAX_ID, description="A photo's id (as search results give it)")]
MAX_UPLOAD_BYTES = 30 * 1024 * 1024
MAX_DOWNLOAD = 500  # photos in one zip (and set aside in one request)
PAGE = 60
MAX_MONTH_PAGE = 1000  # a timeline month's photos in one answer
HANDFUL = 5  # acting on more groups than this at once needs a confirmation (the page asks for it typed)


def _search_params() -> type[BaseModel]:
    """Every search route's query parameters: the query, the page, and one field per filter (imgsearch.filters);
    an unknown parameter is an error, never silently a search without that condition."""
    fields: dict = {
        "q": (str, Field("", description="The query: words, + and -, N:term weights, like:ID, and filter words such "
                                         "as camera:x100v after:2019-05 type:video tag:beach")),
        "k": (int, Field(PAGE, ge=1, le=MAX_K, description="How many results")),
        "offset": (int, Field(0, ge=0, description="Skip this many results first (paging)")),
        "min_score": (float | None, Field(None, ge=-1, le=1, description="Only results at least this similar")),
        "sort": (str, Field(SORTS[0], description=f"Order: {', '.join(SORTS)}")),
        "upload": (str | None, Field(None, pattern=r"^[A-Za-z0-9_-]{1,32}$", description=(
            "An image searched by upload before (the `upload` id POST /search/image answered): its results again, "
            "further pages of them, with other words or filters; kept for an hour after its last use"))),
        "like": (list[Annotated[int, Field(ge=1, le=MAX_ID)]], Field(
            [], description="More like these photos (ids; repeat the parameter): the ranking moves towards them")),
        "unlike": (list[Annotated[int, Field(ge=1, le=MAX_ID)]], Field(
            [], description="Fewer like these photos: the ranking moves away from them, and they leave the results")),
    }
    return create_model("SearchParams", __config__=ConfigDict(extra="forbid"), **fields, **_filter_fields())


def _filter_fields() -> dict:
    """One query parameter per filter (imgsearch.filters), as pydantic fields."""
    return {f.name: (list[str], Field([], description=f.help)) if f.many else
            (str | None, Field(None, description=f.help)) for f in FILTERS}


SearchParams = _search_params()
Params = Annotated[SearchParams, Query()]  # type: ignore[valid-type]
_PAGE_FIELDS: dict = {
    "offset": (int, Field(0, ge=0, description="Skip this many of the month's photos first (paging)")),
    "limit": (int, Field(120, ge=1, le=MAX_MONTH_PAGE, description="How many of the month's photos")),
    "inline": (int, Field(0, ge=0, le=1280, description=(
        "Also send the thumbnails already made at this size (e.g. 320) inline, as data: URLs in `thumb`: one "
        "request for a page's pictures instead of one each (0: none)")))}
TimelineParams = create_model("TimelineParams", __config__=ConfigDict(extra="forbid"), **_filter_fields(),
                              **_PAGE_FIELDS)
FilterParams = create_model("FilterParams", __config__=ConfigDict(extra="forbid"), **_filter_fields())


def filters_of(params: BaseModel) -> Filters:
    """The filters a route's query parameters give."""
    values = params.model_dump()
    return Filters.parse({f.name: values[f.name] for f in FILTERS})


def search_request(params: BaseModel, *first: Term, uploads: Uploads | None = None) -> tuple[list[Term], SearchOptions]:
    """A search route's terms (`first`, an upload's kept vector, then the query's) and options, filter words in the
    query included."""
    values = params.model_dump()
    if values["upload"]:
        if uploads is None:
            raise UsageError("an upload id is not taken here", "upload")
        first = (*first, Term(1.0, "vector", "upload", uploads.get(values["upload"])))
    words, typed = split_words(values["q"])
    filters = filters_of(params).merged(typed)
    marked = bool(values["like"] or values["unlike"])  # photos marked, no words: more like the liked ones alone
    terms = [*first, *query_terms(words)] if words or not (first or values["like"]) else list(first)
    if marked:
        terms = feedback_terms(terms, values["like"], values["unlike"])
    return terms, SearchOptions(k=values["k"], offset=values["offset"], min_score=values["min_score"],
                                sort=values["sort"], filters=filters)


class DupAction(BaseModel):
    """The body of POST /dups/actions."""
    action: str  # "move" | "link"
    groups: list[int]  # keeper ids of the groups to act on (as /dups listed them)
    keep: list[int] = []  # keepers chosen instead of the suggested ones
    tier: list[str] = []
    yes: bool = False


class TagChange(BaseModel):
    """The body of POST /tags."""
    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(max_length=MAX_DOWNLOAD)  # the photos
    add: list[str] = Field([], max_length=20)
    remove: list[str] = Field([], max_length=20)


class SetAside(BaseModel):
    """The body of POST /set-aside."""
    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(max_length=MAX_DOWNLOAD)  # the photos
    yes: bool = False  # needed for more than a handful


def build_router(lib: Library, jobs: Jobs, set_aside: Path, uploads: Uploads) -> APIRouter:
    api = APIRouter(prefix=PREFIX)

    def results(hits: list, opts: SearchOptions) -> dict:
        return {"results": [_hit(h) for h in hits], "offset": opts.offset,
                "next_offset": opts.offset + len(hits) if len(hits) == opts.k else None}

    @api.get("/search", summary="Search by text, `like:ID` terms, + and - arithmetic, with filters")
    def search(params: Params, request: Request) -> dict:
        terms, opts = search_request(params, uploads=uploads)
        if not params.upload:  # type: ignore[attr-defined]  # (an upload's vector is kept for an hour only)
            keep(request)
        return results(lib.search(terms, opts, allow_urls=False), opts)

    @api.post("/search/image", summary="Search by an uploaded image (optionally with a text query), with filters; "
                                       "the answer's `upload` id asks for the same image again (GET /search?upload=)")
    async def search_image(image: Annotated[UploadFile, File()], params: Params,
                           q: Annotated[str, Form(description="Text added to the image (as the q parameter)")] = ""
                           ) -> dict:
        data = await image.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise UsageError(f"the image is over {MAX_UPLOAD_BYTES:,} bytes", "image")
        if q.strip():
            params = params.model_copy(update={"q": f"{params.q} {q}".strip()})  # type: ignore[attr-defined]

        def decode_and_search() -> dict:  # CPU work (and a first model load): never on the event loop
            image = lib.embed_image(data)
            terms, opts = search_request(params, image, uploads=uploads)
            assert image.vector is not None  # a "vector" term carries its vector
            upload_id = uploads.put(image.vector)
            return {**results(lib.search(terms, opts, allow_urls=False), opts), "upload": upload_id}

        return await run_in_threadpool(decode_and_search)

    @api.get("/timeline", summary="The library by date: every month holding photos (that pass the filters), "
                                   "newest first, with how many")
    def months(params: Annotated[FilterParams, Query()]) -> dict:  # type: ignore[valid-type]
        found = lib.months(filters_of(params))
        return {"months": [asdict(m) for m in found], "total": sum(m.count for m in found)}

    @api.get("/timeline/{month}", summary="One month's photos (YYYY-MM; those that pass the filters), newest first, "
                                          "a page at a time")
    def month(month: Annotated[str, InPath(description="The month, YYYY-MM", max_length=7)],
              params: Annotated[TimelineParams, Query()]) -> dict:  # type: ignore[valid-type]
        offset, limit, inline = params.offset, params.limit, params.inline  # type: ignore[attr-defined]
        found = lib.month_photos(month, filters_of(params), offset, limit)
        thumbs = lib.thumbnails.cached([p.id for p in found], inline) if inline else {}
        photos = [{**_jsonable(asdict(p)), **({"thumb": "data:image/webp;base64," + base64.b64encode(thumbs[p.id])
                                               .decode()} if p.id in thumbs else {})} for p in found]
        return {"month": month, "photos": photos, "offset": offset,
                "next_offset": offset + len(found) if len(found) == limit else None}

    @api.get("/places", summary="Every photo with a GPS position (that passes the filters): ids and positions, for "
                                 "a map (lat and lon in degrees, 5 decimals: about a metre)")
    def gps(params: Annotated[FilterParams, Query()]) -> Response:  # type: ignore[valid-type]
        ids, positions = lib.gps_points(filters_of(params))
        body = {"ids": ids.tolist(), "lat": positions[:, 0].round(5).tolist(), "lon": positions[:, 1].round(5).tolist()}
        return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")

    @api.get("/images/{image_id}", summary="A photo's record: path, size, date taken, camera, GPS, tags")
    def image(image_id: ImageId) -> dict:
        return _jsonable(asdict(lib.photo(image_id)))

    @api.get("/images/{image_id}/similar", summary="The photos most like this one (with text added by q), with "
                                                    "filters")
    def similar(image_id: ImageId, params: Params, request: Request) -> dict:
        terms, opts = search_request(params, Term(1.0, "photo", str(image_id)), uploads=uploads)
        if not params.upload:  # type: ignore[attr-defined]
            keep(request)
        return results(lib.search(terms, opts), opts)

    @api.get("/images/{image_id}/thumb", summary="A WebP thumbnail (sizes 160, 320, 640, 1280); of a video, its "
                                                  "key frame at t (milliseconds)")
    def thumb(image_id: ImageId, request: Request, size: Annotated[int, Query(ge=16, le=4096)] = 320,
              t: Annotated[int, Query(ge=0)] = 0) -> Response:
        data, key = lib.thumbnails.get(image_id, size, t)
        etag = f'"{key}"'
        # kept by browsers, but asked again each time (a 304 while unchanged): an id can come to name another photo,
        # and a photo's file can change, under the same URL
        headers = {"Cache-Control": "public, no-cache", "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type="image/webp", headers=headers)

    @api.get("/images/{image_id}/file", summary="The original file (byte ranges supported)")
    def file(image_id: ImageId) -> FileResponse:
        path = lib.original(image_id)
        return FileResponse(path, filename=path.name, content_disposition_type="inline")

    @api.get("/download", summary="Photos' original files as one zip, streamed (the page's selection)",
             response_class=StreamingResponse)
    def download(given: Annotated[list[Annotated[int, Field(ge=1, le=MAX_ID)]], Query(
            alias="id", description=f"The photos (repeat the parameter; at most {MAX_DOWNLOAD})")] = []  # noqa: B006
                 ) -> StreamingResponse:
        ids = list(dict.fromkeys(given))
        if not ids:
            raise UsageError("give the photos to download: id=ID, repeated", "id")
        if len(ids) > MAX_DOWNLOAD:
            raise UsageError(f"{len(ids)} photos asked: at most {MAX_DOWNLOAD} in one download", "id")
        files: list[tuple[int, Path | None, str]] = []
        for image_id in ids:
            try:
                files.append((image_id, lib.original(image_id), ""))
            except NotFoundError as exc:
                files.append((image_id, None, exc.message))
        return StreamingResponse(zip_stream(files), media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="imgsearch-{len(ids)}-photos.zip"',
            "Cache-Control": "no-store"})

    @api.get("/tags", summary="Each tag and how many photos carry it")
    def tags() -> dict:
        return lib.tags()

    @api.get("/status", summary="Roots, counts, models and their indexes, the last run, duplicates actions")
    def status(request: Request) -> dict:
        return {**_jsonable(asdict(lib.status())), "watching": request.app.state.watch}

    answers = DupAnswers()

    @api.get("/dups", summary="Groups of copies with a keeper each (exact and near; similar when asked)",
             responses={202: {"description": "No answer for the library as it is now: a duplicates scan was "
                                             "started (or is running); follow its events, then ask again"}})
    def dups(response: Response, tier: Annotated[list[str], Query()] = [],  # noqa: B006
             keep: Annotated[list[int], Query()] = []) -> dict:  # noqa: B006
        options = _dup_options(lib, tier, keep)
        key, state = (options.tiers, options.keep), lib.duplicates_state()
        ready = answers.get(key, state)
        if ready is not None:
            return _dups_body(ready)

        def scan(progress: Progress) -> str:  # seconds of CPU at 100k photos: a job with progress, not a GET
            report = lib.duplicates(options, progress=progress)
            answers.put(key, state, report)
            return f"{len(report.groups)} group(s) of copies"

        job = jobs.start(DUP_SCAN, scan, key=key, join=True)
        response.status_code = 202
        return {"job": job.id, "events": f"/api/v1/jobs/{job.id}/events"}

    @api.post("/dups/actions", summary="Move the copies of some groups aside (or link exact ones), journaled")
    def dup_action(body: DupAction) -> dict:
        if body.action not in ("move", "link"):
            raise UsageError("action must be move or link", "action")
        options = _dup_options(lib, body.tier, body.keep)
        ready = answers.get((options.tiers, options.keep), lib.duplicates_state())
        report = ready if ready is not None else lib.duplicates(options)  # the groups the page showed, if current
        chosen = [g for g in report.groups if g.keeper.id in set(body.groups)]
        if len(chosen) != len(set(body.groups)):
            raise UsageError("some groups are not duplicates any more: reload the page", "groups")
        if len(chosen) > HANDFUL and not body.yes:
            raise UsageError(f"acting on {len(chosen)} groups at once needs a confirmation ({{param}}: true)", "yes")
        done = lib.act_on_duplicates(chosen, move_to=set_aside if body.action == "move" else None,
                                     link="hard" if body.action == "link" else None, apply=True, yes=body.yes)
        return _jsonable(asdict(done))

    @api.post("/tags", summary="Give photos tags and take tags away (a person's tags, kept beside the model's)")
    def tag_photos(body: TagChange) -> dict:
        given, lost = lib.tag_photos(body.ids, body.add, body.remove)
        return {"given": given, "photos_that_lost_one": lost}

    @api.post("/set-aside", summary="Move chosen photos (a selection) aside, out of the library, journaled: "
                                    "POST /dups/undo puts them back")
    def set_photos_aside(body: SetAside) -> dict:
        if len(set(body.ids)) > HANDFUL and not body.yes:
            raise UsageError(f"setting {len(set(body.ids))} photos aside at once needs a confirmation ({{param}}: true)",
                             "yes")
        return _jsonable(asdict(lib.set_aside(body.ids, set_aside)))

    @api.post("/dups/undo", summary="Put the last applied duplicates action back exactly")
    def dup_undo() -> dict:
        return _jsonable(asdict(lib.undo_duplicates()))

    @api.post("/jobs/rescan", summary="Re-scan the library's folders in the background", status_code=202)
    def rescan() -> dict:
        job = jobs.start("re-scan", lambda progress: lib.index((), progress=progress).summary())
        return {"job": job.id, "events": f"/api/v1/jobs/{job.id}/events"}

    @api.get("/jobs/{job_id}/events", summary="A job's progress as server-sent events")
    def events(job_id: int) -> StreamingResponse:
        job = jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id} (only the latest one is kept)", "job_id")
        stream = (f"data: {json.dumps(event)}\n\n" if event else ": keep-alive\n\n" for event in job.follow())
        return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    return api


def split_words(q: str) -> tuple[list[str], Filters]:
    """The search box's words (as a shell splits them) and the filters among them (camera:x100v...)."""
    try:
        words = shlex.split(q)
    except ValueError as exc:
        raise UsageError(f"the query has an unclosed quote ({exc})", "q") from exc
    return split_filters(words)


def query_terms(words: list[str]) -> list[Term]:
    """The CLI's query syntax; `like:ID` is a photo of the library. Paths and URLs are not taken from clients."""
    terms = [Term(t.weight, "photo", photo_id(m.group(1))) if t.kind == "text" and (m := PHOTO_TERM.match(t.value))
             else t for t in parse_query(words)]
    if any(t.kind in ("image", "url") for t in terms):
        raise UsageError("images are given by upload or as like:ID here, not as paths or URLs", "q")
    return terms


def photo_id(digits: str) -> str:
    """A like:ID term's id, refused when no photo can have it (past a BIGINT, or thousands of digits)."""
    if len(digits) > 19 or int(digits) > MAX_ID:
        raise UsageError(f"like:{digits[:24]}{'...' if len(digits) > 24 else ''} names no photo: ids are at most "
                         f"{MAX_ID}", "q")
    return digits


DUP_SCAN = "duplicates scan"


class DupAnswers:
    """The latest duplicates answers (per tiers and keepers asked), each kept while the library stays as it was when
    its scan began (Library.duplicates_state)."""

    KEPT = 8

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: dict[tuple, tuple[tuple, DupReport]] = {}

    def get(self, key: tuple, state: tuple) -> DupReport | None:
        with self._lock:
            found = self._answers.get(key)
        return found[1] if found is not None and found[0] == state else None

    def put(self, key: tuple, state: tuple, report: DupReport) -> None:
        with self._lock:
            self._answers.pop(key, None)
            self._answers[key] = (state, report)
            while len(self._answers) > self.KEPT:
                self._answers.pop(next(iter(self._answers)))


def _dups_body(report: DupReport) -> dict:
    return {"groups": [_group(g) for g in report.groups], "share": round(report.grouped_share, 4),
            "warnings": [render_params(w, lambda name: f'"{name}": true') for w in report.warnings],
            "thresholds": asdict(report.thresholds),
            "borderline": [{"a": _brief(b.a), "b": _brief(b.b), "cosine": round(b.cosine, 4), "grouped": b.grouped}
                           for b in report.borderline]}


class _Chunks(io.RawIOBase):
    """Where a zip being streamed is written: what accumulates is taken away by `take` (zipfile needs only write and
    tell: an unseekable stream gets data descriptors)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # bytes-like
        self.parts.append(bytes(data))
        self.written += len(data)
        return len(data)

    def tell(self) -> int:
        return self.written

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def zip_stream(files: list[tuple[int, Path | None, str]], chunk: int = 1 << 20) -> Iterator[bytes]:
    """A zip of these (id, file, why not) entries, made as it is sent: photos are stored as they are (compressed
    already), each under its own name (a second one of the same name gets " (2)"), read a megabyte at a time; the
    photos that could not be included are listed, with why, in not-included.txt."""
    sink = _Chunks()
    used: set[str] = set()
    missing: list[str] = []
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for image_id, path, why in files:
            if path is None:
                missing.append(f"{image_id}\t{why}")
                continue
            name, n = path.name, 1
            while name.lower() in used:
                n += 1
                name = f"{path.stem} ({n}){path.suffix}"
            used.add(name.lower())
            try:
                with path.open("rb") as src, archive.open(name, "w", force_zip64=True) as dest:
                    while data := src.read(chunk):
                        dest.write(data)
                        yield sink.take()
            except OSError as exc:  # (a read failing half-way leaves that entry short: said here too)
                missing.append(f"{image_id}\t{path}: {exc.strerror or exc}")
        if missing:
            archive.writestr("not-included.txt", "\n".join(missing) + "\n")
    yield sink.take()


def _dup_options(lib: Library, tiers: list[str], keep: list[int]) -> DupOptions:
    kept = tuple(lib.photo(i).path for i in keep)
    return DupOptions(tiers=tuple(tiers), keep=kept) if tiers else DupOptions(keep=kept)


def _hit(h) -> dict:  # SearchResult
    return {"id": h.id, "rank": h.rank, "score": round(h.score, 6), "path": h.path, "name": Path(h.path).name,
            "time_ms": h.time_ms, "at": h.at}


def _brief(p) -> dict:  # a duplicates Photo
    return {"id": p.id, "path": p.path, "name": Path(p.path).name}


def _group(g) -> dict:  # a duplicates Group
    return {"tier": g.tier, "keeper": g.keeper.id, "keeper_reason": g.keeper_reason,
            "members": [{"id": m.photo.id, "path": m.photo.path, "name": Path(m.photo.path).name,
                         "relation": m.relation, "width": m.photo.width, "height": m.photo.height,
                         "bytes": m.photo.size, "cosine": None if m.cosine is None else round(m.cosine, 4),
                         "hamming": m.hamming, "fine": m.fine, "transform": m.transform, "key_frames": m.key_frames}
                        for m in g.members]}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
