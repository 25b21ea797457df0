"""Filters as users type them (folder, dates, camera, extensions, size, tags) -> a checked config.Filters.

One parser for every front end: the CLI's options and a web form's fields arrive here as text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from imgsearch.config import Filters
from imgsearch.errors import UsageError

_EXT = re.compile(r"^[A-Za-z0-9]{1,10}$")
MAX_SIDE = 1_000_000  # no image has a side this long; larger numbers would not even fit the database's integers


def parse_date(text: str, param: str) -> datetime:
    """YYYY, YYYY-MM, YYYY-MM-DD or an ISO date-time -> the start of that period."""
    value = text.strip()
    for fmt in ("%Y", "%Y-%m", "%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    raise UsageError(f"{{param}} {text!r} is not a date: use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM", param)


def check_ext(ext: str) -> str:
    value = ext.strip().lstrip(".").lower()
    if not _EXT.match(value):
        raise UsageError(f"{{param}} {ext!r} is not a file extension (letters and digits, e.g. jpg)", "exts")
    return value


def parse_filters(folder: str | Path | None = None, after: str | None = None, before: str | None = None,
                  camera: str | None = None, exts: Sequence[str] = (), min_size: int | None = None,
                  tags: Sequence[str] = ()) -> Filters:
    """Filters from text values; empty values mean no condition."""
    if min_size is not None and not 1 <= min_size <= MAX_SIDE:
        raise UsageError(f"{{param}} must be between 1 and {MAX_SIDE:,} pixels, got {min_size}", "min_size")
    return Filters(
        folder=os.path.abspath(Path(folder).expanduser()) if folder else None,
        after=parse_date(after, "after") if after else None,
        before=parse_date(before, "before") if before else None,
        camera=camera.strip() or None if camera else None,
        exts=tuple(check_ext(e) for e in exts),
        min_size=min_size, tags=tuple(t.strip() for t in tags if t.strip()))
