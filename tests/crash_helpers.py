"""A chunk decoder that kills its worker process on files named *crash*: a stand-in for a codec segfault."""

from __future__ import annotations

import os

from imgsearch.images.loader import decode_files


def crashing_decode_chunk(paths, geo, max_pixels, sampling):
    if any("crash" in os.path.basename(p) for p in paths):
        os._exit(139)  # what a segfault looks like to the pool: the process is gone
    return decode_files(paths, geo, max_pixels, sampling)


def unstartable_decode_chunk(paths, geo, max_pixels, sampling):
    """Dies whenever it runs in a worker process (the pool's health check included)."""
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        os._exit(1)
    return decode_files(paths, geo, max_pixels, sampling)
