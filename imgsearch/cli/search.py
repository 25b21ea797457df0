"""`imgsearch search` and `imgsearch export`: find images, and hand results or vectors to other tools."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from imgsearch.errors import UsageError, from_os_error
from imgsearch.cli.app import (LibraryOpt, ModelOpt, PretrainedOpt, app, err, handled, model_spec,
                               open_library, with_filters)
from imgsearch.config import MAX_K, SORTS, SearchOptions


@app.command()
@with_filters
def search(
    query: Annotated[Optional[list[str]], typer.Argument(metavar="QUERY",
        help="What to look for. Words form a phrase; + and - (separate words) combine terms; N:term weighs "
             "a term; @FILE or @URL is an image. E.g.: beach + sunset - people, 2:dog + @cat.jpg",
        show_default=False)] = None,
    image: Annotated[Optional[Path], typer.Option(
        "--image", "-i", help="Search by an image file (same as the term @FILE).", dir_okay=False)] = None,
    top: Annotated[int, typer.Option("--top", "-k", help=f"How many results (at most {MAX_K:,}).")] = SearchOptions.k,
    offset: Annotated[int, typer.Option(help="Skip this many results first (paging).")] = SearchOptions.offset,
    min_score: Annotated[Optional[float], typer.Option(help="Only results at least this similar (cosine).")] = None,
    sort: Annotated[str, typer.Option(help="Order of the results: score, date (newest first) or path.")] = SORTS[0],
    like: Annotated[Optional[list[int]], typer.Option(
        help="More like this photo (its id, as --json gives it): results move towards the photos marked so; "
             "repeatable.", show_default=False)] = None,
    unlike: Annotated[Optional[list[int]], typer.Option(
        help="Fewer like this photo: results move away from it, and it leaves them; repeatable.",
        show_default=False)] = None,
    filters: dict = {},  # noqa: B006 (one option per search filter: with_filters)
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    as_paths: Annotated[bool, typer.Option("--paths", help="Bare paths, one per line.")] = False,
    nul: Annotated[bool, typer.Option("-0", help="With --paths: NUL-separated (for xargs -0).")] = False,
    html_file: Annotated[Optional[Path], typer.Option("--html", help="Also write a contact sheet (HTML) here.",
                                                      dir_okay=False)] = None,
    copy_to: Annotated[Optional[Path], typer.Option(help="Also copy the results into this folder.")] = None,
    link_to: Annotated[Optional[Path], typer.Option(help="Also symlink the results into this folder.")] = None,
    library: LibraryOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
) -> None:
    """Find the images that best match a text, an image, or a combination.

    \b
    Examples:
      imgsearch search "a dog on the beach"
      imgsearch search beach + sunset - people --after 2019 --top 20
      imgsearch search dog camera:x100v after:2019-05 type:video
      imgsearch search --image ~/Pictures/cat.jpg --json
      imgsearch search "red dress" --like 12 --like 40 --unlike 7
    """
    from imgsearch.cli import render as output
    from imgsearch import Filters, Term, feedback_terms, parse_query, split_filters

    with handled():
        if as_json and as_paths:
            raise UsageError("--json and --paths cannot be combined.")
        if not query and image is None:
            raise UsageError("give a query (words, + and - between terms, @FILE for an image) or --image PATH.")
        words, typed = split_filters(query or [])
        if not words and image is None:
            raise UsageError("give some words to search for as well as the filters, or --image PATH.")
        terms = (parse_query(words) if words else []) + ([Term(1.0, "image", str(image))] if image else [])
        if like or unlike:
            terms = feedback_terms(terms, like or [], unlike or [])
        options = SearchOptions(k=top, offset=offset, min_score=min_score, sort=sort,
                                filters=Filters.parse(filters).merged(typed))
        results = None
        if all(t.kind in ("text", "marked") for t in terms) and model is None and pretrained is None:
            params = [("q", shlex.join(words)), ("k", str(top)), ("offset", str(offset)), ("sort", sort)]
            params += [("like", str(i)) for i in like or []] + [("unlike", str(i)) for i in unlike or []]
            params += [("min_score", str(min_score))] if min_score is not None else []
            results = _ask_server(library, params + options.filters.texts(), words)
        if results is None:
            with open_library(library) as lib:
                results = lib.search(terms, options, model_spec(model, pretrained))
        if html_file is not None:
            _write_html(html_file, results, " ".join(query or []) or str(image))
        for dest, mode in ((copy_to, "copy"), (link_to, "link")):
            if dest is not None:
                from imgsearch import export_results

                written = export_results(results, dest.expanduser(), mode)
                there = len(results) - len(written)
                err(f"{'Copied' if mode == 'copy' else 'Linked'} {len(written)} file(s) into {dest}"
                    + (f" ({there} already there)" if there else ""))
    if as_json:
        sys.stdout.write(output.json_lines(results))
    elif as_paths or nul:
        sys.stdout.write(output.paths(results, nul))
    elif results:
        sys.stdout.write(output.table(results))
    if not results:
        err("No results" + (" at or above --min-score" if min_score is not None else "") + ".")


def _ask_server(library: Optional[Path], params: list[tuple[str, str]], words: list[str]) -> list | None:
    """A running `imgsearch serve` of this library answers a text query without loading a model here."""
    if any(re.match(r"^like:\d+$", w) for w in words):  # the server's own syntax: not what the words mean here
        return None
    from imgsearch import SearchResult
    from imgsearch.cli.remote import running_server, search
    from imgsearch.config import default_library_dir

    server = running_server((library.expanduser() if library else default_library_dir()).absolute())
    rows = search(server, params) if server else None
    return None if rows is None else [SearchResult(r["rank"], r["score"], r["path"], r["id"], r.get("time_ms"))
                                      for r in rows]


def _write_html(path: Path, results: list, title: str) -> None:
    from imgsearch.cli import render as output
    from imgsearch import thumbnail_jpeg

    thumbs = {r.id: thumbnail_jpeg(r.path, at_ms=r.time_ms or 0) for r in results}
    try:
        path.expanduser().write_text(output.html(results, thumbs, f"imgsearch: {title}"), encoding="utf-8")
    except OSError as exc:
        raise from_os_error(exc, f"cannot write {path}") from exc
    err(f"Contact sheet: {path}")


@app.command()
def export(
    dest: Annotated[Path, typer.Argument(metavar="DEST", help="New folder to write into.", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="npy (vectors.npy, ids.npy, paths.jsonl) or parquet.")] = "npy",
    library: LibraryOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
) -> None:
    """Export one model's vectors with their image ids and paths, for your own tools."""
    with handled():
        with open_library(library) as lib:
            written = lib.export_vectors(dest.expanduser(), fmt, model_spec(model, pretrained))
    err(f"Wrote {', '.join(str(p) for p in written)}")
