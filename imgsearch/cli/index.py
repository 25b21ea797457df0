"""`imgsearch index`: crawl folders, encode what is new or changed, build the search index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional
import typer
from imgsearch.cli.app import (LibraryOpt, ModelOpt, PretrainedOpt, TqdmProgress, app, err, handled, model_spec,
                               open_library)
from imgsearch.config import IndexSettings, Precision, VideoSampling


# the options `index` and `watch` share
ExcludeOpt = Annotated[Optional[list[str]], typer.Option(
    "--exclude", "-x", help="Glob of names or relative paths to skip (repeatable).")]
HiddenOpt = Annotated[bool, typer.Option("--include-hidden", help="Also index hidden files and folders.")]
WorkersOpt = Annotated[int, typer.Option(help="Decode processes (-1: one per core, 0: none).")]


@app.command()
def index(
    folders: Annotated[Optional[list[Path]], typer.Argument(metavar="FOLDER",
        help="Folders to index (default: every folder the library already has).", show_default=False)] = None,
    library: LibraryOpt = None,
    db_url: Annotated[Optional[str], typer.Option(
        "--db", help="Where a new library keeps its data: postgresql+psycopg://USER@HOST/NAME (an empty database, "
                     "or one another library folder uses already). The folder remembers it. Default: a SQLite file "
                     "in the library folder; also IMGSEARCH_DB_URL.", show_default=False)] = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    exclude: ExcludeOpt = None,
    include_hidden: HiddenOpt = False,
    workers: WorkersOpt = IndexSettings.workers,
    batch_size: Annotated[int, typer.Option(help="Images per encoder batch (0: automatic).",
                                            min=0)] = IndexSettings.batch_size,
    gpu_decode: Annotated[Optional[bool], typer.Option(
        "--gpu-decode/--no-gpu-decode", help="Decode JPEGs on the GPU too [default: when CUDA is used].",
        show_default=False)] = None,
    frame_every: Annotated[float, typer.Option(help="Videos: embed at most one key frame per this many seconds.",
                                               min=0.1)] = VideoSampling.every_s,
    max_frames: Annotated[int, typer.Option(help="Videos: at most this many frames each (long ones are spread out).",
                                            min=1)] = VideoSampling.max_frames,
    ray: Annotated[Optional[str], typer.Option(
        "--ray", help="Decode and encode on a Ray cluster: auto (the cluster this machine is part of), "
                      "ray://HOST:10001, or local (start one here). Photos and model must be at the same paths "
                      "on every node.", show_default=False)] = None,
    gpus_per_worker: Annotated[float, typer.Option(help="With --ray: GPUs per encoder (0: encode on CPUs).",
                                                   min=0)] = IndexSettings.gpus_per_worker,
    index_memory_gb: Annotated[Optional[float], typer.Option(
        help="RAM the search index may take, in GB: a library whose index would not fit gets one with its lists "
             "on disk (remembered for later runs).", min=0.001, show_default=False)] = None,
    runtime: Annotated[Optional[str], typer.Option(
        help="Encode with torch, openvino or onnx (exported once from the model's weights, kept once per user) "
             "[default: IMGSEARCH_RUNTIME, else torch on a GPU, OpenVINO or ONNX Runtime on a CPU when installed].",
        show_default=False)] = None,
    precision: Annotated[str, typer.Option(
        help="fp32, or int8 (OpenVINO/ONNX Runtime: a quantized image tower, calibrated on your photos and kept "
             "only when it matches fp32).")] = Precision.FP32.value,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print a per-stage time breakdown.")] = False,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Rebuild (and retrain) the search index from the stored "
                                                             "vectors.")] = False,
    thumbnails: Annotated[bool, typer.Option("--thumbnails", help="Also make the thumbnails `imgsearch serve` shows, "
                                                                   "so its first scroll is fast.")] = False,
) -> None:
    """Crawl folders, encode new and changed images, and build the search index.

    \b
    Examples:
      imgsearch index ~/Pictures
      imgsearch index                # re-scan every folder the library has
      imgsearch index ~/Pictures --exclude "*/export/*" --model immich:ViT-B-16-SigLIP2__webli
    """
    from imgsearch import CrawlSettings, IndexSettings, VideoSampling, check_roots
    from imgsearch.cli.render import shown

    with handled():
        check_roots(folders or [])  # before the library is created: a typo must not leave one behind
        settings = IndexSettings(crawl=CrawlSettings(include_hidden=include_hidden, excludes=tuple(exclude or ())),
                                 batch_size=batch_size, workers=workers, gpu_decode=gpu_decode, rebuild=rebuild,
                                 video=VideoSampling(frame_every, max_frames), ray=ray, gpus_per_worker=gpus_per_worker,
                                 index_memory=int(index_memory_gb * 1e9) if index_memory_gb else None,
                                 runtime=runtime, precision=precision)
        with open_library(library, create=True, db_url=db_url) as lib:
            report = lib.index(folders or (), model_spec(model, pretrained), settings, TqdmProgress())
            made = lib.make_thumbnails(progress=TqdmProgress()) if thumbnails else None
        for warning in report.warnings:
            err(f"Warning: {warning}")
        for path, reason in report.skipped_now[:20]:
            err(f"Skipped {shown(path)}: {reason}")
        if len(report.skipped_now) > 20:
            err(f"... and {len(report.skipped_now) - 20} more (imgsearch status --skipped lists them all)")
        if verbose:
            err(report.times.breakdown(report.seconds))
        err(f"Indexed: {report.summary()}")
        if made is not None:
            err(f"Thumbnails: {made[0]} made, {made[1]} already there" + (f", {made[2]} failed" if made[2] else ""))


@app.command()
def watch(
    folders: Annotated[Optional[list[Path]], typer.Argument(metavar="FOLDER",
        help="Folders to index and watch (default: every folder the library already has).", show_default=False)] = None,
    library: LibraryOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    exclude: ExcludeOpt = None,
    include_hidden: HiddenOpt = False,
    workers: WorkersOpt = IndexSettings.workers,
) -> None:
    """Index folders, then keep the library up to date as photos are added, changed, moved or deleted.

    Each batch of changes (files written within about 1.6 s of each other) is one ordinary `imgsearch index` run:
    one writer at a time, resumable, only what changed is encoded. Ctrl-C stops.

    \b
    Examples:
      imgsearch watch ~/Pictures
      imgsearch watch                # every folder the library has
    """
    import signal
    import time

    from imgsearch import CrawlSettings, IndexSettings, check_roots
    from imgsearch.cli.render import shown

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a service manager's stop: as Ctrl-C
    with handled():
        check_roots(folders or [])
        settings = IndexSettings(crawl=CrawlSettings(include_hidden=include_hidden, excludes=tuple(exclude or ())),
                                 workers=workers)
        with open_library(library, create=True) as lib:
            try:
                for run in lib.watch(folders or (), model_spec(model, pretrained), settings, TqdmProgress()):
                    for warning in run.report.warnings if run.report else []:
                        err(f"Warning: {warning}")
                    for path, reason in run.report.skipped_now[:20] if run.report else []:
                        err(f"Skipped {shown(path)}: {reason}")
                    if not run.changes:
                        err(run.line())
                        watched = f"{len(folders)} folder(s)" if folders else "the library's folders"
                        err(f"Watching {watched} for new, changed, moved and deleted photos and videos (Ctrl-C "
                            "stops).")
                    elif not run.quiet:
                        err(f"{time.strftime('%H:%M:%S')} {run.line()}")
            except KeyboardInterrupt:
                pass
        err("Stopped watching.")


@app.command()
def forget(
    folder: Annotated[Path, typer.Argument(metavar="FOLDER", show_default=False,
                                           help="One of the library's folders (as `imgsearch status` lists them).")],
    library: LibraryOpt = None,
) -> None:
    """Remove a folder and its photos from the library: their vectors, tags and thumbnails. The files are not
    touched.

    Example: imgsearch forget /mnt/old-drive/photos
    """
    with handled({"folder": "FOLDER"}):
        with open_library(library) as lib:
            report = lib.forget(folder)
    err(f"Forgot {', '.join(report.folders)}: {report.photos} photo(s) and their vectors, tags and thumbnails "
        f"({report.thumbnails} file(s)) are out of the library; the files themselves are untouched. "
        f"Bring them back with: imgsearch index {report.folders[0]}")
