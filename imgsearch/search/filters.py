"""Filter values as users type them (dates, extensions) -> checked values for config.Filters."""

from __future__ import annotations

import re
from datetime import datetime

from imgsearch.errors import UsageError

_EXT = re.compile(r"^[A-Za-z0-9]{1,10}$")


def parse_date(text: str, option: str) -> datetime:
    """YYYY, YYYY-MM, YYYY-MM-DD or an ISO date-time -> the start of that period."""
    value = text.strip()
    for fmt in ("%Y", "%Y-%m", "%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    raise UsageError(f"{option} {text!r} is not a date: use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM")


def check_ext(ext: str) -> str:
    value = ext.strip().lstrip(".").lower()
    if not _EXT.match(value):
        raise UsageError(f"--ext {ext!r} is not a file extension (letters and digits, e.g. jpg)")
    return value
