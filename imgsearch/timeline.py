"""The library by date: its months with how many photos each (a timeline's headings and scrubber), and one month's
photos a page at a time (only what is on screen is ever asked for). Dates are the date taken, else the file's
modification time, as the date filters and the date order use them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from imgsearch import store
from imgsearch.errors import UsageError
from imgsearch.filters import Filters

MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")
MAX_PAGE = 1000  # photos of a month in one answer


@dataclass(frozen=True)
class Month:
    month: str  # "2024-05"
    count: int  # photos dated in it (that pass the filters)


@dataclass(frozen=True)
class DatedPhoto:
    id: int
    name: str
    path: str
    date: datetime  # date taken, else file time
    video: bool


def months(sessions: sessionmaker[Session], filters: Filters) -> list[Month]:
    """Every month holding photos that pass the filters, newest first, with its count."""
    with sessions() as session:
        return [Month(m, n) for m, n in store.month_counts(session, filters)]


def month_range(month: str) -> tuple[datetime, datetime]:
    """[first day, first day of the next month) of a 'YYYY-MM'; UsageError for anything else."""
    found = MONTH.match(month)
    if not found:
        raise UsageError(f"{month[:20]!r} is not a month: write it as YYYY-MM (2024-05)", "month")
    year, number = int(found.group(1)), int(found.group(2))
    if year < 1:
        raise UsageError(f"{month!r} is not a month: years start at 0001", "month")
    end = datetime(year + 1, 1, 1) if number == 12 else datetime(year, number + 1, 1)
    return datetime(year, number, 1), end


def photos_of(sessions: sessionmaker[Session], month: str, filters: Filters, offset: int = 0,
              limit: int = 100) -> list[DatedPhoto]:
    """A month's photos (that pass the filters), newest first, `limit` of them from `offset`."""
    if not 1 <= limit <= MAX_PAGE:
        raise UsageError(f"{{param}} must be 1 to {MAX_PAGE} (it is {limit})", "limit")
    if offset < 0:
        raise UsageError(f"{{param}} must be 0 or more (it is {offset})", "offset")
    start, end = month_range(month)
    with sessions() as session:
        rows = store.month_photos(session, start, end, filters, offset, limit)
    return [DatedPhoto(i, Path(path).name, path, shot_at, duration is not None) for i, path, shot_at, duration in rows]
