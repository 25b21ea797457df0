"""Parallel decode + preprocess in worker processes with a bounded look-ahead.

Workers import Pillow and numpy only (never torch): a pool forked after torch has run can hang,
so the pool uses forkserver (spawn where that is missing).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

from imgsearch.errors import ImageError
from imgsearch.images import Decoded, Geometry, decode_file

CHUNK = 8  # files per task: amortises IPC without making the look-ahead coarse


@dataclass(frozen=True)
class Skipped:
    """A file the loader could not turn into pixels, with the reason a user will read."""

    path: str
    reason: str
    size: int = 0
    mtime_ns: int = 0


def decode_or_skip(path: str, geo: Geometry, max_pixels: int) -> Decoded | Skipped:
    """Decode one file; any failure becomes a Skipped with its reason (a bad file never stops a run)."""
    try:
        return decode_file(path, geo, max_pixels)
    except ImageError as exc:
        try:
            st = os.stat(path)
            size, mtime_ns = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime_ns = 0, 0
        return Skipped(path, exc.message, size, mtime_ns)


def _decode_chunk(paths: Sequence[str], geo: Geometry, max_pixels: int) -> list[Decoded | Skipped]:
    return [decode_or_skip(p, geo, max_pixels) for p in paths]


def default_workers() -> int:
    """One decode process per core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _context() -> mp.context.BaseContext:
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def load(paths: Sequence[str], geo: Geometry, max_pixels: int, workers: int) -> Iterator[Decoded | Skipped]:
    """Decoded files in input order; at most ~4 chunks per worker are in flight, so memory stays flat."""
    if workers <= 0:
        for path in paths:
            yield decode_or_skip(path, geo, max_pixels)
        return
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    workers = min(workers, max(1, len(chunks)))
    pending: deque[Future] = deque()
    with ProcessPoolExecutor(max_workers=workers, mp_context=_context()) as pool:
        todo = iter(chunks)
        for chunk in todo:
            pending.append(pool.submit(_decode_chunk, chunk, geo, max_pixels))
            if len(pending) >= workers * 4:
                break
        while pending:
            results = pending.popleft().result()
            for chunk in todo:  # refill one chunk for each one taken
                pending.append(pool.submit(_decode_chunk, chunk, geo, max_pixels))
                break
            yield from results
