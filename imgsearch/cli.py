"""The `imgsearch` command: parse, call the library, render. The only module that prints or exits."""

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


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90', '30s', '10m', '2h', '1d' -> seconds."""
    value = text.strip().lower()
    unit = _DURATION_UNITS.get(value[-1:], None)
    try:
        seconds = float(value[:-1] if unit else value) * (unit or 1)
    except ValueError:
        raise UsageError(f"--within {text!r} is not a duration: use 30s, 10m, 2h or 1d.") from None
    return seconds


@app.command()
def dups(
    paths: Annotated[Optional[list[Path]], typer.Argument(
        help="Only photos inside these folders [default: the whole library]. `imgsearch dups undo` reverses "
             "the last --apply.", show_default=False)] = None,
    tier: Annotated[Optional[list[str]], typer.Option(
        help="Only groups of this tier: exact, near or similar (repeatable) [default: all].")] = None,
    near_hamming: Annotated[Optional[int], typer.Option(
        help="Near-exact: coarse pHash bits (of 64) that may differ [default: the model's, else 10].")] = None,
    near_fine: Annotated[Optional[int], typer.Option(
        help="Near-exact: fine pHash bits (of 256) that may differ for the same pixels [default: 40].")] = None,
    near_cosine: Annotated[Optional[float], typer.Option(
        help="Near-exact: cosine confirming a same-pixels match [default: the model's, else 0.50].")] = None,
    edited_cosine: Annotated[Optional[float], typer.Option(
        help="Near-exact: cosine a crop or heavier edit (coarse match only) needs [default: 0.95].")] = None,
    similar: Annotated[Optional[float], typer.Option(
        "--similar", help="Similar: minimum embedding cosine [default: the model's, else 0.95]. "
                          "Thresholds given are remembered for the model.")] = None,
    within: Annotated[Optional[str], typer.Option(
        help="Similar: only photos taken this close in time (30s, 10m, 2h).")] = None,
    max_group: Annotated[int, typer.Option(help="Largest group: stops chains of look-alikes.")] = 50,
    neighbours: Annotated[int, typer.Option(help="Candidates searched per photo.")] = 32,
    keep: Annotated[Optional[list[Path]], typer.Option(
        help="Keep this photo in its group, overriding the suggestion (repeatable).")] = None,
    move_to: Annotated[Optional[Path], typer.Option(
        help="Move every non-keeper here, keeping its path relative to its indexed folder (with --apply).")] = None,
    link: Annotated[Optional[str], typer.Option(
        help="Replace byte-identical copies by hard or symbolic links to the keeper (with --apply).")] = None,
    do_apply: Annotated[bool, typer.Option("--apply", help="Act; without it, --move-to/--link only show the plan.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per group.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="One CSV row per photo.")] = False,
    rescan: Annotated[bool, typer.Option(help="Search every photo again, not only new ones.")] = False,
    library: LibraryOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
) -> None:
    """Find exact, near-exact and similar copies; move them aside or link them. Never deletes a photo."""
    from imgsearch import output
    from imgsearch.config import DUP_TIERS, DupOptions

    with handled():
        if paths and [str(p) for p in paths] == ["undo"]:
            with open_library(library) as lib:
                _report_action(lib.undo_duplicates())
            return
        if as_json and as_csv:
            raise UsageError("--json and --csv cannot be combined.")
        for folder in paths or []:
            if not folder.expanduser().is_dir():
                raise UsageError(f"{folder} is not a folder (to reverse the last action: imgsearch dups undo).")
        options = DupOptions(
            tiers=tuple(tier) if tier else DUP_TIERS, near_hamming=near_hamming, near_fine=near_fine,
            near_cosine=near_cosine, edited_cosine=edited_cosine, similar_cosine=similar, within_s=parse_duration(within) if within else None, max_group=max_group,
            k=neighbours, folders=tuple(os.path.abspath(p.expanduser()) for p in paths or ()),
            keep=tuple(os.path.abspath(p.expanduser()) for p in keep or ()), rescan=rescan)
        with open_library(library) as lib:
            found = lib.duplicates(options, model_spec(model, pretrained), TqdmProgress())
            action = None
            if move_to is not None or link is not None:
                action = lib.act_on_duplicates(found.groups, move_to, link, do_apply)
            elif do_apply:
                raise UsageError("--apply needs an action: --move-to DIR or --link hard|symbolic.")
    groups = found.groups
    sys.stdout.write(output.dup_json(groups) if as_json else output.dup_csv(groups) if as_csv else output.dup_table(groups))
    copies = sum(len(g.duplicates) for g in groups)
    tiers = ", ".join(f"{sum(g.tier == t for g in groups)} {t}" for t in DUP_TIERS if any(g.tier == t for g in groups))
    spare = sum(m.photo.size for g in groups for m in g.duplicates)
    t = found.thresholds
    err(f"{len(groups)} group(s){f' ({tiers})' if tiers else ''}: {copies} copies, {output.human_bytes(spare)} besides "
        f"the keepers. {found.hashed} photo(s) hashed, {found.rescanned} searched, {found.elapsed_s:.1f} s. "
        f"Thresholds: near pHash <= {t.near_hamming}/64 with {t.near_fine}/256 and cos >= {t.near_cosine} "
        f"(else cos >= {t.edited_cosine}), similar cos >= {t.similar_cosine}.")
    if found.unreadable:
        err(f"{len(found.unreadable)} photo(s) could not be read now (gone or changed? run imgsearch index): "
            + "; ".join(f"{p}: {r}" for p, r in found.unreadable[:5]))
    if found.refused_by_cap or found.refused_as_chain:
        err(f"Not merged: {found.refused_by_cap} link(s) past --max-group, {found.refused_as_chain} chain link(s) "
            "between dissimilar photos.")
    if action is not None:
        _report_action(action)


def _report_action(report) -> None:  # noqa: ANN001 (ActionReport; imported lazily)
    from imgsearch.output import human_bytes

    verb = {"move": "move", "hardlink": "hard-link", "symlink": "symlink"}.get(report.kind.removeprefix("undo-"))
    for path, reason in report.refused:
        err(f"  left alone: {path}: {reason}")
    for path, reason in report.problems:
        err(f"  failed: {path}: {reason}")
    if not report.applied:
        for step in report.done:
            err(f"  would {verb}: {step.src} -> {step.dest}")
        err(f"Dry run: would {verb} {len(report.done)} file(s) ({human_bytes(report.bytes)}). "
            "Nothing was changed: add --apply to do it (undo with: imgsearch dups undo).")
    elif report.kind.startswith("undo-"):
        err(f"Undone: {len(report.done)} file(s) restored"
            + (f", {len(report.problems)} left as they are (see above); run `imgsearch dups undo` again once fixed."
               if report.problems else "."))
    else:
        err(f"Done: {verb} {len(report.done)} file(s) ({human_bytes(report.bytes)})"
            + (f", {len(report.problems)} failed (left where they were)" if report.problems else "")
            + (f", {len(report.refused)} left alone" if report.refused else "")
            + ". Undo with: imgsearch dups undo")
    if report.applied and report.problems:
        raise typer.Exit(1)


class TqdmTrainProgress(TqdmProgress):
    """Training: a bar per epoch with loss and img/s, and a line per epoch with validation figures."""

    def advance(self, n: int = 1, **postfix: float) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in postfix.items()}, refresh=False)

    def epoch_done(self, report) -> None:  # noqa: ANN001 (training.EpochReport)
        self.close()
        val = "  ".join(f"{k} {v:.3f}" for k, v in report.val.items())
        err(f"epoch {report.epoch}: loss {report.loss:.4f}  {val}  ({report.seconds:.0f} s, {report.images_per_s:.0f} img/s)")


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="A CSV (path,caption), a folder with NAME.txt captions beside the "
                                              "images, or a folder of class folders.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the trained model (open_clip local-dir).")],
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    arch: Annotated[Optional[str], typer.Option(
        help="Train from scratch: small, tiny, an open_clip model name, or a JSON config file.")] = None,
    template: Annotated[str, typer.Option(help="Caption for class folders.")] = "a photo of a {label}",
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[int, typer.Option(min=2)] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warmup then cosine).")] = 5e-4,
    weight_decay: Annotated[float, typer.Option()] = 0.1,
    warmup: Annotated[int, typer.Option(help="Warmup steps.")] = 50,
    accumulate: Annotated[int, typer.Option(min=1, help="Micro-batches per optimiser step.")] = 1,
    val_fraction: Annotated[float, typer.Option(help="Share of pairs held out for validation.")] = 0.1,
    lock_image: Annotated[bool, typer.Option(help="Keep the image tower fixed (LiT).")] = False,
    lock_text: Annotated[bool, typer.Option(help="Keep the text tower fixed.")] = False,
    augment: Annotated[bool, typer.Option(help="Random crops and flips.")] = True,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model (CUDA).")] = False,
    resume: Annotated[bool, typer.Option(help="Continue the run saved in --out.")] = False,
    seed: Annotated[int, typer.Option()] = 0,
    workers: Annotated[int, typer.Option(help="Decode processes (-1: one per core).")] = -1,
) -> None:
    """Train a CLIP model on your own image-caption pairs (contrastive, from scratch or fine-tuning)."""
    import time

    from imgsearch.training import TrainSettings, read_pairs
    from imgsearch.training import train as run_training

    with handled():
        if not 0 <= val_fraction < 1:
            raise UsageError("--val-fraction must be in [0, 1).")
        pairs = read_pairs(data, template)
        settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                 warmup_steps=warmup, accumulate=accumulate, val_fraction=val_fraction,
                                 lock_image=lock_image, lock_text=lock_text, augment=augment,
                                 compile=compile_model, seed=seed, workers=workers)
        err(f"{len(pairs)} pairs, {len({p.caption for p in pairs})} distinct captions")
        start = time.perf_counter()
        try:
            reports = run_training(pairs, out.expanduser(), settings,
                                   None if resume else model_spec(model, pretrained), None if resume else arch,
                                   resume=resume, progress=TqdmTrainProgress())
        except KeyboardInterrupt:
            err(f"Interrupted: every finished epoch is saved in {out}; continue with the same command and --resume.")
            raise typer.Exit(130) from None
    last = reports[-1] if reports else None
    val = "  ".join(f"{k} {v:.3f}" for k, v in last.val.items()) if last else ""
    err(f"Trained {len(reports)} epoch(s) in {time.perf_counter() - start:.0f} s; {val}. "
        f"Use it: imgsearch index FOLDER --model local-dir:{out}")


def _encoder(library: Optional[Path], model: Optional[str], pretrained: Optional[str]):  # -> Encoder
    """--model when given (no library needed), else the library's own model."""
    spec = model_spec(model, pretrained)
    if spec is not None:
        from imgsearch.encoder import OpenClipEncoder

        return OpenClipEncoder.load(spec)
    with open_library(library) as lib:
        return lib.encoder_for(None)


LabelsOpt = Annotated[Optional[str], typer.Option("--labels", help="Comma-separated labels.")]
LabelsFileOpt = Annotated[Optional[Path], typer.Option(help="Labels, one per line (# comments).")]
TemplateOpt = Annotated[Optional[list[str]], typer.Option(
    "--template", help="Prompt template with {label} (repeatable; averaged) [default: 6 CLIP-style prompts].")]


@app.command()
def classify(
    images: Annotated[list[Path], typer.Argument(help="Image files.", show_default=False)],
    labels: LabelsOpt = None,
    labels_file: LabelsFileOpt = None,
    template: TemplateOpt = None,
    top: Annotated[int, typer.Option("--top", "-k", help="Labels shown per image.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image.")] = False,
    library: LibraryOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
) -> None:
    """Zero-shot: the probability of each label for each image."""
    from imgsearch.zeroshot import classify as run_classify
    from imgsearch.zeroshot import parse_labels

    with handled():
        names = parse_labels(labels, labels_file)
        encoder = _encoder(library, model, pretrained)
        results = run_classify(encoder, [str(p) for p in images], names, tuple(template or ()))
    failed = 0
    for path, probs in results:
        if isinstance(probs, str):
            failed += 1
            err(f"{path}: {probs}")
        elif as_json:
            sys.stdout.write(json.dumps({"path": path, "labels": [{"label": k, "probability": round(v, 6)}
                                                                   for k, v in probs[:top]]}, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(f"{path}\t" + "\t".join(f"{k} {v:.3f}" for k, v in probs[:top]) + "\n")
    if failed:
        raise typer.Exit(1)


@app.command(name="tag")
def tag_images(
    labels: LabelsOpt = None,
    labels_file: LabelsFileOpt = None,
    template: TemplateOpt = None,
    top: Annotated[int, typer.Option(help="Labels kept per image.")] = 1,
    min_prob: Annotated[float, typer.Option(help="Keep a label only at this probability or above.")] = 0.0,
    library: LibraryOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
) -> None:
    """Zero-shot tag every indexed image (from its stored vector); then: imgsearch search ... --tag LABEL."""
    from imgsearch.zeroshot import parse_labels

    with handled():
        names = parse_labels(labels, labels_file)
        with open_library(library) as lib:
            images, written = lib.tag(names, tuple(template or ()), top, min_prob, model_spec(model, pretrained))
    err(f"Tagged {images} image(s) with {len(names)} label(s): {written} tag(s) written. "
        f"Filter with: imgsearch search QUERY --tag {names[0]!r}")


@app.command(name="eval")
def evaluate(
    folder: Annotated[Path, typer.Argument(help="A folder with one sub-folder of images per label.", show_default=False)],
    template: TemplateOpt = None,
    k: Annotated[int, typer.Option("--k", "-k", help="Cut-off for precision@k and recall@k.", min=1)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    workers: Annotated[int, typer.Option(help="Decode processes (-1: one per core).")] = -1,
    library: LibraryOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
) -> None:
    """Measure a model on a labelled folder: text->image P@k and R@k, zero-shot accuracy, image->image P@k."""
    from dataclasses import asdict

    from imgsearch.evaluation import evaluate_folder
    from imgsearch.zeroshot import check_templates

    with handled():
        encoder = _encoder(library, model, pretrained)
        report = evaluate_folder(encoder, folder, check_templates(tuple(template or ())), k, workers)
    if as_json:
        sys.stdout.write(json.dumps(asdict(report), indent=2) + "\n")
    else:
        sys.stdout.write(f"{report.images} images, {len(report.labels)} labels, {len(report.templates)} template(s)\n")
        sys.stdout.write("".join(f"{name:<20} {value:.4f}\n" for name, value in report.metrics.items()))
    if report.skipped:
        err(f"{len(report.skipped)} image(s) could not be read, e.g. {report.skipped[0][0]}: {report.skipped[0][1]}")


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
