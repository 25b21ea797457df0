"""The pages: search (a grid, infinite scroll, drop an image), a photo, the duplicates review, the status. Server
rendered (Jinja2, autoescaped), so every state is a URL; app.js adds scrolling, dropping and the keyboard."""

from __future__ import annotations

import calendar
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from imgsearch import FILTERS, Filters, ImgSearchError, Library, SearchOptions, Term, UsageError, timestamp
from imgsearch.config import SORTS
from imgsearch.web.api import PAGE, ImageId, SearchParams, search_request
from imgsearch.web.uploads import Uploads
from imgsearch.web.errors import invalid_fields, status_of

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
FIELDS = (*(f.name for f in FILTERS), "min_score", "sort")  # the form's fields besides q
MARKS = ("like", "unlike")  # photos marked "more like this" / "fewer like this" (the tiles' + and - buttons)


def build_router(lib: Library, uploads: Uploads) -> APIRouter:
    pages = APIRouter(include_in_schema=False)

    def render(request: Request, name: str, code: int = 200, **context: object) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, name, {"library": str(lib.path), **context}, status_code=code)

    def failed(request: Request, exc: ImgSearchError, **context: object) -> HTMLResponse:
        return render(request, "search.html", status_of(exc), error=exc.render(lambda name: name), **context)

    @pages.get("/", response_class=HTMLResponse)
    def search_page(request: Request) -> HTMLResponse:
        params = request.query_params
        q = params.get("q", "").strip()
        state = _state(params)
        choices = {f.name: list(f.choices) for f in FILTERS if f.choices} | {"tag": sorted(lib.tags())}
        context: dict[str, Any] = {
            "q": q, "state": state, "filters": FILTERS, "choices": choices, "sorts": SORTS, "results": [], "api": "",
            "page": PAGE, "filters_given": any(state[name] for name in FIELDS if name != "sort"), "kept": FIELDS}
        if not q and not state["upload"] and not state["like"]:  # the home page: the library by date (the filters in force apply)
            try:
                filters = _filters(state)
                months = lib.months(filters)
            except ImgSearchError as exc:
                return failed(request, exc, **context)
            return render(request, "search.html", **context, months=[_month(m) for m in months],
                          filters_query=urlencode(filters.texts()), total=sum(m.count for m in months))
        try:
            hits = lib.search(*_request(q, state, PAGE, 0, uploads), allow_urls=False)
        except ImgSearchError as exc:
            return failed(request, exc, **context)
        except ValueError as exc:  # a field pydantic refused (a score that is not a number)
            return render(request, "search.html", 400, error=_refused(exc), **context)
        query = urlencode([(k, v) for k, v in params.multi_items() if k != "offset"])
        unmarked = "/?" + urlencode([(k, v) for k, v in params.multi_items() if k not in ("offset", *MARKS)])
        return render(request, "search.html", **{**context, "results": hits, "query": query, "unmarked": unmarked,
                                                 "api": f"/api/v1/search?{query}"})

    @pages.get("/photo/{image_id}", response_class=HTMLResponse)
    def photo_page(request: Request, image_id: ImageId) -> HTMLResponse:
        params = request.query_params
        try:
            rank, t = _count(params, "i"), _count(params, "t") or 0
            info = lib.photo(image_id)
            similar = lib.similar(image_id, SearchOptions(k=12))
        except ImgSearchError as exc:
            return render(request, "message.html", status_of(exc), message=exc.render(lambda name: name))
        around = _neighbours(lib, uploads, params, rank)
        back = "/?" + urlencode([(k, v) for k, v in params.multi_items() if k not in ("i", "t")]) \
            if params.get("q") or params.get("upload") else "/"
        duration = timestamp(info.duration_ms) if info.duration_ms is not None else None
        return render(request, "photo.html", info=info, similar=similar, back=back, q=params.get("q", ""), t=t,
                      at=timestamp(t), duration=duration, **around)

    @pages.get("/map", response_class=HTMLResponse)
    def map_page(request: Request) -> HTMLResponse:
        state = _state(request.query_params)
        try:
            filters = _filters(state)
        except ImgSearchError as exc:
            return render(request, "message.html", status_of(exc), message=exc.render(lambda name: name))
        return render(request, "map.html", filters_query=urlencode(filters.texts()))

    @pages.get("/dups", response_class=HTMLResponse)
    def dups_page(request: Request) -> HTMLResponse:
        return render(request, "dups.html")

    @pages.get("/status", response_class=HTMLResponse)
    def status_page(request: Request) -> HTMLResponse:
        return render(request, "status.html", status=lib.status(), skipped=lib.skipped()[:200],
                      watching=request.app.state.watch)

    return pages


MAX_COUNT = 10**12  # a rank or a time (ms) in a page's URL: past this, no library or video has it


def _count(params, name: str) -> int | None:  # query parameters
    """A whole number from the URL (None when absent); UsageError for anything else: a superscript digit, a sign,
    thousands of digits."""
    text = params.get(name)
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 13 and int(text) <= MAX_COUNT):
        raise UsageError(f"{name}={text[:20]}{'...' if len(text) > 20 else ''} is not a whole number up to "
                         f"{MAX_COUNT:,}", name)
    return int(text)


def _neighbours(lib: Library, uploads: Uploads, params, i: int | None) -> dict:  # query parameters
    """Links to the previous and next result of the search this photo was opened from (`q` or an `upload`, and its
    rank `i`)."""
    if not (params.get("q") or params.get("upload")) or i is None:
        return {"prev": None, "next": None}
    start = max(0, i - 1)
    try:
        hits = lib.search(*_request(params.get("q", ""), _state(params), 3, start, uploads), allow_urls=False)
    except (ImgSearchError, ValueError):
        return {"prev": None, "next": None}
    at = {start + h.rank - 1: h for h in hits}  # ranks count from 1 within the page asked for
    rest = [(k, v) for k, v in params.multi_items() if k != "i"]

    def link(position: int) -> str | None:
        hit = at.get(position)
        return f"/photo/{hit.id}?" + urlencode(rest + [("i", str(position))]) if hit and position >= 0 else None

    return {"prev": link(i - 1), "next": link(i + 1)}


def _filters(state: dict) -> Filters:
    """The filters of the form's fields (UsageError for a value that is not one)."""
    return Filters.parse({f.name: state[f.name] for f in FILTERS})


def _month(m) -> dict:  # a timeline Month
    """A month's heading: its key ('2024-05'), its name ('May 2024'), its year and photo count."""
    year, number = (int(part) for part in m.month.split("-"))
    return {"key": m.month, "name": f"{calendar.month_name[number]} {year}", "year": year, "count": m.count}


def _state(params) -> dict:  # query parameters
    """The search form's fields as the URL gives them, and the photos marked up or down (relevance feedback)."""
    many = {f.name for f in FILTERS if f.many}
    return {k: params.getlist(k) if k in many else params.get(k, "") for k in FIELDS} | \
        {k: params.getlist(k) for k in MARKS} | {"upload": params.get("upload", "")}


def _request(q: str, state: dict, k: int, offset: int, uploads: Uploads) -> tuple[list[Term], SearchOptions]:
    """The terms and options of the form's search, read as the API reads its parameters; ValueError for a field
    that is not what it should be."""
    given = {name: value for name, value in state.items() if value not in ("", [])}
    return search_request(SearchParams.model_validate({**given, "q": q, "k": k, "offset": offset}), uploads=uploads)


def _refused(exc: ValueError) -> str:
    errors = exc.errors() if isinstance(exc, ValidationError) else []
    return "; ".join(message for _, message in invalid_fields(errors)) if errors else str(exc)
