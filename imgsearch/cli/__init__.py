"""The `imgsearch` command: parse, call the library, render. The only package that prints or exits.

This module holds the shared options and helpers and the index/search/status commands;
dups_commands and model_commands (train, classify, tag, eval) add theirs to the same app.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Iterator, Optional

import typer

from imgsearch.config import DEFAULT_MODEL, DEFAULT_PRETRAINED, LIBRARY_ENV
from imgsearch.errors import ImgSearchError, UsageError

if TYPE_CHECKING:
    from imgsearch.library import Library

app = typer.Typer(
    help="Semantic image search for photo libraries: index folders, then search them by text or by image.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Library database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")

LibraryOpt = Annotated[Optional[Path], typer.Option(
    "--library", "-L", envvar=LIBRARY_ENV, show_envvar=True, file_okay=False,
    help="Library folder (default: the user data dir).")]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help=f"open_clip model name, hf-hub:ORG/REPO, or local-dir:DIR [default: the library's "
                          f"model, else {DEFAULT_MODEL}].")]
PretrainedOpt = Annotated[Optional[str], typer.Option(
    "--pretrained", help=f"Pretrained tag or checkpoint file for --model [default: {DEFAULT_PRETRAINED} "
                         f"with {DEFAULT_MODEL}].")]


def err(message: str) -> None:
    typer.echo(message, err=True)


@contextmanager
def handled() -> Iterator[None]:
    """Library errors become 'Error: ...' on stderr and their exit code; Ctrl-C exits 130."""
    try:
        yield
    except ImgSearchError as exc:
        err(f"Error: {exc.message}")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err("Interrupted: work done so far is saved; run the same command again to continue.")
        raise typer.Exit(130) from None


def open_library(path: Optional[Path], create: bool = False) -> "Library":
    from imgsearch.library import Library

    return Library.open(path, create=create)


def model_spec(model: Optional[str], pretrained: Optional[str]):  # -> ModelSpec | None
    """None when neither option is given (the library's own model is used)."""
    from imgsearch.config import ModelSpec

    if model is None and pretrained is None:
        return None
    name = model or DEFAULT_MODEL
    if pretrained is None and name == DEFAULT_MODEL:
        pretrained = DEFAULT_PRETRAINED
    return ModelSpec(name, pretrained)


class TqdmProgress:
    """One tqdm bar per pipeline stage, on stderr."""

    def __init__(self) -> None:
        self.bar = None

    def stage(self, name: str, total: int | None) -> None:
        from tqdm import tqdm

        self.close()
        unit = "img" if name == "encoding" else "file"
        self.bar = tqdm(total=total, desc=name, unit=unit, file=sys.stderr, dynamic_ncols=True,
                        leave=False, disable=None)  # None: bars only on a terminal

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@app.command()
def index(
    folders: Annotated[Optional[list[Path]], typer.Argument(
        help="Folders to index (default: every folder the library already has).", show_default=False)] = None,
    library: LibraryOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    exclude: Annotated[Optional[list[str]], typer.Option(
        "--exclude", "-x", help="Glob of names or relative paths to skip (repeatable).")] = None,
    include_hidden: Annotated[bool, typer.Option(help="Also index hidden files and folders.")] = False,
    workers: Annotated[int, typer.Option(help="Decode processes (-1: one per core, 0: none).")] = -1,
    batch_size: Annotated[int, typer.Option(help="Images per encoder batch (0: automatic).", min=0)] = 0,
    gpu_decode: Annotated[Optional[bool], typer.Option(
        "--gpu-decode/--no-gpu-decode", help="Decode JPEGs on the GPU too [default: when CUDA is used].",
        show_default=False)] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print a per-stage time breakdown.")] = False,
    rebuild: Annotated[bool, typer.Option(help="Rebuild (and retrain) the search index from the stored vectors.")] = False,
) -> None:
    """Crawl folders, encode new and changed images, and build the search index."""
    from imgsearch.config import CrawlSettings, IndexSettings

    with handled():
        from indexer.pipeline import check_roots

        check_roots(folders or [])  # before the library is created: a typo must not leave one behind
        settings = IndexSettings(crawl=CrawlSettings(include_hidden=include_hidden, excludes=tuple(exclude or ())),
                                 batch_size=batch_size, workers=workers, gpu_decode=gpu_decode, rebuild=rebuild)
        with open_library(library, create=True) as lib:
            report = lib.index(folders or (), model_spec(model, pretrained), settings, TqdmProgress())
        for warning in report.warnings:
            err(f"Warning: {warning}")
        for path, reason in report.skipped_now[:20]:
            err(f"Skipped {path}: {reason}")
        if len(report.skipped_now) > 20:
            err(f"... and {len(report.skipped_now) - 20} more (imgsearch status --skipped lists them all)")
        if verbose:
            err(report.times.breakdown(report.seconds))
        err(f"Indexed: {report.summary()}")


@app.command()
def search(
    query: Annotated[Optional[list[str]], typer.Argument(
        help="What to look for. Words form a phrase; + and - (separate words) combine terms; N:term weighs "
             "a term; @FILE or @URL is an image. E.g.: beach + sunset - people, 2:dog + @cat.jpg",
        show_default=False)] = None,
    image: Annotated[Optional[Path], typer.Option(
        "--image", "-i", help="Search by an image file (same as the term @FILE).", dir_okay=False)] = None,
    top: Annotated[int, typer.Option("--top", "-k", help="How many results.")] = 10,
    offset: Annotated[int, typer.Option(help="Skip this many results first (paging).")] = 0,
    min_score: Annotated[Optional[float], typer.Option(help="Only results at least this similar (cosine).")] = None,
    sort: Annotated[str, typer.Option(help="Order of the results: score, date (newest first) or path.")] = "score",
    in_folder: Annotated[Optional[Path], typer.Option("--in", help="Only images inside this folder.",
                                                      file_okay=False)] = None,
    after: Annotated[Optional[str], typer.Option(help="Only images taken on or after DATE (YYYY[-MM[-DD]]).")] = None,
    before: Annotated[Optional[str], typer.Option(help="Only images taken before DATE (YYYY[-MM[-DD]]).")] = None,
    camera: Annotated[Optional[str], typer.Option(help="Only images whose camera make/model contains this.")] = None,
    ext: Annotated[Optional[list[str]], typer.Option(help="Only these file extensions (repeatable).")] = None,
    min_size: Annotated[Optional[int], typer.Option(help="Only images whose shorter side has this many pixels.",
                                                    min=1)] = None,
    tag: Annotated[Optional[list[str]], typer.Option(
        help="Only images tagged with this label by `imgsearch tag` (repeatable: all of them).")] = None,
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
    """Find the images that best match a text, an image, or a combination."""
    from imgsearch import output
    from imgsearch.config import Filters, SearchOptions
    from imgsearch.search import Term, check_ext, parse_date, parse_query

    with handled():
        if as_json and as_paths:
            raise UsageError("--json and --paths cannot be combined.")
        if not query and image is None:
            raise UsageError("give a query (words, + and - between terms, @FILE for an image) or --image PATH.")
        terms = (parse_query(query) if query else []) + ([Term(1.0, "image", str(image))] if image else [])
        filters = Filters(
            folder=os.path.abspath(in_folder.expanduser()) if in_folder else None,
            after=parse_date(after, "--after") if after else None,
            before=parse_date(before, "--before") if before else None,
            camera=camera.strip() or None if camera else None,
            exts=tuple(check_ext(e) for e in ext or ()),
            min_size=min_size, tags=tuple(t.strip() for t in tag or () if t.strip()))
        options = SearchOptions(k=top, offset=offset, min_score=min_score, sort=sort, filters=filters)
        with open_library(library) as lib:
            results = lib.search(terms, options, model_spec(model, pretrained))
        if html_file is not None:
            _write_html(html_file, results, " ".join(query or []) or str(image))
        for dest, mode in ((copy_to, "copy"), (link_to, "link")):
            if dest is not None:
                from imgsearch.export import export_results

                written = export_results(results, dest.expanduser(), mode)
                err(f"{'Copied' if mode == 'copy' else 'Linked'} {len(written)} file(s) into {dest}")
    if as_json:
        sys.stdout.write(output.json_lines(results))
    elif as_paths or nul:
        sys.stdout.write(output.paths(results, nul))
    elif results:
        sys.stdout.write(output.table(results))
    if not results:
        err("No results" + (" at or above --min-score" if min_score is not None else "") + ".")


def _write_html(path: Path, results: list, title: str) -> None:
    from imgsearch import output
    from imgsearch.images import thumbnail_jpeg

    thumbs = {r.id: thumbnail_jpeg(r.path) for r in results}
    try:
        path.expanduser().write_text(output.html(results, thumbs, f"imgsearch: {title}"), encoding="utf-8")
    except OSError as exc:
        raise ImgSearchError(f"cannot write {path}: {exc.strerror or exc}") from exc
    err(f"Contact sheet: {path}")


@app.command()
def export(
    dest: Annotated[Path, typer.Argument(help="New folder to write into.", show_default=False)],
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


@app.command()
def status(
    library: LibraryOpt = None,
    skipped: Annotated[bool, typer.Option("--skipped", help="List files that could not be indexed, and why.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show roots, counts, models, index state and the last run."""
    with handled():
        with open_library(library) as lib:
            if skipped:
                rows = lib.skipped()
                if as_json:
                    sys.stdout.write("".join(json.dumps({"path": p, "reason": r}, ensure_ascii=False) + "\n"
                                             for p, r in rows))
                else:
                    sys.stdout.write("".join(f"{p}\t{r}\n" for p, r in rows))
                    err(f"{len(rows)} skipped file(s).")
                return
            st = lib.status()
    if as_json:
        from dataclasses import asdict

        sys.stdout.write(json.dumps(asdict(st), default=str, indent=2) + "\n")
        return
    lines = [f"Library:  {st.path}", f"Images:   {st.indexed} indexed, {st.skipped} skipped"
             + (" (imgsearch status --skipped)" if st.skipped else ""), "Roots:"]
    lines += [f"  {path}  ({n} images){'' if ok else '  [not reachable]'}" for path, n, ok in st.roots] or ["  (none)"]
    lines.append("Models:")
    for m in st.models:
        name = m.name + (f" ({m.pretrained})" if m.pretrained else "") + (
            f" [weights sha256 {m.checkpoint_sha256[:12]}]" if m.checkpoint_sha256 else "")
        tuned = "".join(f", {k} {v}" for k, v in sorted(m.index_params.items()) if m.index_spec != "IDMap2,Flat")
        recall = f", recall@10 {m.index_recall_at_10:.3f}" if m.index_recall_at_10 is not None else ""
        state = "fresh" if m.index_fresh else "stale: updated on next search"
        idx = f"index {m.index_spec}{tuned}{recall}, {m.index_count} vectors, {state}" if m.index_spec else "no index yet"
        lines.append(f"  {name}  dim {m.dim}, {m.vectors} vectors; {idx}")
    if not st.models:
        lines.append("  (none)")
    if st.set_aside or st.pending_undo:
        u = st.pending_undo
        lines.append(f"Dups:     {st.set_aside} photo(s) set aside"
                     + (f"; last action: {u['kind']} of {u['files']} file(s) at "
                        f"{u['created_at']:%Y-%m-%d %H:%M:%S} UTC (imgsearch dups undo)" if u else ""))
    if st.tags:
        lines.append("Tags:     " + ", ".join(f"{label} ({n})" for label, n in sorted(st.tags.items())))
    if st.last_run:
        r = st.last_run
        when = (r["finished_at"] or r["started_at"]).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"Last run: {r['status']} at {when} UTC: {r['new']} new, "
                     f"{r['changed']} changed, {r['moved']} moved, {r['unchanged']} unchanged, {r['removed']} removed, "
                     f"{r['skipped']} skipped")
    sys.stdout.write("\n".join(lines) + "\n")


@db_app.command("upgrade")
def db_upgrade(library: LibraryOpt = None) -> None:
    """Back up the library database, then migrate it to this version's schema."""
    from imgsearch import db
    from imgsearch.config import DB_FILENAME, default_library_dir

    with handled():
        path = (library.expanduser() if library else default_library_dir()).absolute()
        db_path = path / DB_FILENAME
        if not db_path.is_file():
            from imgsearch.errors import LibraryNotFoundError

            raise LibraryNotFoundError(f"no library database at {db_path}: nothing to upgrade.")
        engine = db.make_engine(db_path)
        try:
            before = db.current_revision(engine)
            if before == db.head_revision():
                err(f"{db_path} is already at schema {before}.")
                return
            copy = db.backup(db_path)
            err(f"Backed up to {copy}")
            db.upgrade_to_head(engine)
            err(f"Upgraded {db_path}: schema {before or 'none'} -> {db.head_revision()}")
        finally:
            engine.dispose()


def main() -> None:
    app()


# The other commands live beside this module and register themselves on `app` when imported.
from imgsearch.cli import dups_commands, model_commands  # noqa: E402, F401
