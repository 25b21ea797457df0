"""Worker processes: how many, and how they start (forkserver or spawn: a pool forked after torch ran can hang)."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
from collections.abc import Iterator


def default_workers() -> int:
    """One decode process per core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def importable_main() -> Iterator[None]:
    """Start workers without a __main__ path that does not exist (python - < script, some REPLs).

    forkserver/spawn children re-run the parent's main file by path; ours need only imgsearch.images.loader,
    so a bogus path ('<stdin>') would only kill them at start.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or os.path.isfile(path):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def worker_context() -> mp.context.BaseContext:
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")
