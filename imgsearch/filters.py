"""The search filters, each declared once: its name, how its text is read, its help and its label.

Every front end is generated from `FILTERS`: the CLI's options (`--camera`), the JSON API's parameters
(`?camera=`), the web form's fields, the search-bar words (`camera:x100v`), and the request the CLI sends to a
running server. The SQL of each filter lives in the store (`imgsearch.store.images.CONDITIONS`, one entry per
name). Adding a filter: one `Filter` here, one condition there, a test.

A filter's `name` is its key in `Filters`, the API's field, the search-bar word and (unless `option` says
otherwise) its CLI option. Values arrive as text and are read by `parse`, which raises a UsageError naming
`{param}`; `show` writes a value back as text that `parse` reads the same.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from imgsearch import places
from imgsearch.errors import UsageError

MAX_SIDE = 1_000_000  # no image has a side this long; larger numbers would not even fit the database's integers
MAX_KM = 20_040.0  # half the Earth's circumference: every place is nearer than this
_EXT = re.compile(r"^[A-Za-z0-9]{1,10}$")
_DATE_FORMATS = ("%Y", "%Y-%m", "%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")
MEDIA_TYPES = ("photo", "video")


def _short(text: str) -> str:
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def parse_date(value: str | datetime, param: str = "after") -> datetime:
    """YYYY, YYYY-MM, YYYY-MM-DD or an ISO date-time -> the start of that period."""
    if isinstance(value, datetime):
        return value
    text = value.strip()
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{{param}} {_short(value)} is not a date: use YYYY, YYYY-MM, YYYY-MM-DD or "
                         "YYYY-MM-DDTHH:MM", param) from None


def check_ext(value: str) -> str:
    """A file extension, lower case, without its dot."""
    ext = value.strip().lstrip(".").lower()
    if not _EXT.match(ext):
        raise UsageError(f"{{param}} {_short(value)} is not a file extension (letters and digits, e.g. jpg)", "ext")
    return ext


def _folder(value: str | Path) -> str:
    path = os.path.expanduser(value)
    if path.startswith("~"):
        raise UsageError(f"{{param}} {_short(str(value))}: there is no such user, so no such home folder", "folder")
    return os.path.abspath(path)


def _text(param: str) -> Callable[[str], str]:
    def read(value: str) -> str:
        if len(value) > 200:
            raise UsageError(f"{{param}} is {len(value):,} characters long: at most 200", param)
        return value.strip()
    return read


def _side(value: str | int) -> int:
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()):
        raise UsageError(f"{{param}} {_short(text)} is not a whole number of pixels", "min_size")
    if len(text) > 7 or not 1 <= int(text) <= MAX_SIDE:  # thousands of digits are not even converted
        raise UsageError(f"{{param}} must be between 1 and {MAX_SIDE:,} pixels, got {text[:20]}"
                         f"{'...' if len(text) > 20 else ''}", "min_size")
    return int(text)


def _media_type(value: str) -> str:
    kind = value.strip().lower()
    if kind not in MEDIA_TYPES:
        raise UsageError(f"{{param}} {_short(value)} is not a type: use {' or '.join(MEDIA_TYPES)}", "type")
    return kind


@dataclass(frozen=True)
class Near:
    """A circle on the Earth: photos whose GPS position lies within `km` of (`lat`, `lon`)."""

    lat: float
    lon: float
    km: float

    def __str__(self) -> str:
        return f"{self.lat!r},{self.lon!r},{self.km!r}"


def parse_near(value: str | Near) -> Near:
    """LAT,LON,KM (decimal degrees, kilometres) -> a Near."""
    if isinstance(value, Near):
        value = str(value)
    parts = value.replace(" ", "").split(",")
    try:
        lat, lon, km = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"{{param}} {_short(value)} is not LAT,LON,KM (decimal degrees and kilometres, e.g. "
                         "48.8584,2.2945,5)", "near") from None
    if not (all(map(math.isfinite, (lat, lon, km))) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise UsageError(f"{{param}} {_short(value)} is not a place: latitude -90..90, longitude -180..180", "near")
    if not 0 < km <= MAX_KM:
        raise UsageError(f"{{param}}'s distance must be over 0 and at most {MAX_KM:,.0f} km, got {km:g}", "near")
    return Near(lat, lon, km)


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


@dataclass(frozen=True)
class Filter:
    """One filter. `many`: repeatable, and a photo must pass every value (`tag`) or any of them (`ext`), as the
    store's condition says."""

    name: str
    label: str  # the web form's label
    help: str  # the CLI's help and the API's description
    parse: Callable[[Any], Any]
    show: Callable[[Any], str] = str
    many: bool = False
    option: str | None = None  # the CLI's option, when not --name (with dashes)
    metavar: str = "TEXT"
    placeholder: str = ""  # the web form's example
    inputmode: str = "text"  # the keyboard a phone shows for it
    choices: tuple[str, ...] = ()  # a closed set of values: the web form offers them

    @property
    def flag(self) -> str:
        return "--" + (self.option or self.name.replace("_", "-"))


FILTERS: tuple[Filter, ...] = (
    Filter("folder", "Folder", "Only photos inside this folder.", _folder, option="in", metavar="FOLDER",
           placeholder="/home/me/Pictures/2023"),
    Filter("after", "Taken on or after", "Only photos taken on or after DATE (YYYY[-MM[-DD]]; the file's time when "
           "it has no date taken).", lambda v: parse_date(v, "after"), show=datetime.isoformat, metavar="DATE",
           placeholder="2023-06"),
    Filter("before", "Taken before", "Only photos taken before DATE (YYYY[-MM[-DD]]).",
           lambda v: parse_date(v, "before"), show=datetime.isoformat, metavar="DATE", placeholder="2023-09"),
    Filter("camera", "Camera", "Only photos whose camera make and model contain this (any case).",
           _text("camera"), placeholder="pixel 7"),
    Filter("ext", "Extension", "Only files with these extensions (repeatable: any of them).", check_ext, many=True,
           metavar="EXT", placeholder="jpg"),
    Filter("tag", "Tag", "Only photos tagged with this label by `imgsearch tag` (repeatable: all of them).",
           _text("tag"), many=True, metavar="LABEL"),
    Filter("type", "Type", "Only photos, or only videos.", _media_type, metavar="photo|video", choices=MEDIA_TYPES),
    Filter("min_size", "Shorter side at least", "Only photos whose shorter side has at least this many pixels.",
           _side, metavar="PIXELS", placeholder="1000", inputmode="numeric"),
    Filter("near", "Near (lat,lon,km)", "Only photos taken within KM kilometres of LAT,LON (their GPS position).",
           parse_near, metavar="LAT,LON,KM", placeholder="48.8584,2.2945,5"),
    Filter("place", "Place", "Only photos taken in or near this town (the one their GPS position is named after; "
           "any case).", _text("place"), metavar="TOWN", placeholder="Lisbon"),
    Filter("country", "Country", "Only photos taken in this country (its code, PT, or its English name).",
           lambda v: places.country_code(v), metavar="COUNTRY", placeholder="PT"),
)
BY_NAME: dict[str, Filter] = {f.name: f for f in FILTERS}
# the search-bar words: each filter's name, with dashes too, and its CLI option's name (in:FOLDER)
_WORDS = {word: f.name for f in FILTERS for word in {f.name, f.name.replace("_", "-"), f.option or f.name}}
_WORD = re.compile(r"^(%s):(.+)$" % "|".join(sorted(_WORDS, key=len, reverse=True)), re.IGNORECASE | re.DOTALL)


class Filters(Mapping[str, Any]):
    """Conditions on photos that compose with the vector search: filter name -> value (a tuple for the
    repeatable ones). Only the filters in use are keys. Values given as text are read as the CLI reads them:
    `Filters(camera="canon", after="2021-06", ext=("jpg", "png"))`."""

    __slots__ = ("_values",)

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(BY_NAME))
        if unknown:
            raise UsageError(f"no filter named {', '.join(unknown)}: the filters are {', '.join(BY_NAME)}",
                             unknown[0])
        clean: dict[str, Any] = {}
        for name, value in values.items():
            spec = BY_NAME[name]
            given = list(value) if isinstance(value, (list, tuple)) else [] if value is None else [value]
            parsed = list(dict.fromkeys(v for v in (spec.parse(v) for v in given if not _blank(v)) if v != ""))
            if len(parsed) > 1 and not spec.many:
                raise UsageError(f"{{param}} is given twice ({' and '.join(map(spec.show, parsed))}): keep one", name)
            if parsed:
                clean[name] = tuple(parsed) if spec.many else parsed[0]
        self._values = clean

    @classmethod
    def parse(cls, texts: Mapping[str, str | Sequence[str] | None]) -> Filters:
        """Filters from text values by name (a web form's, a URL's); empty values mean no condition."""
        return cls(**texts)

    def texts(self) -> list[tuple[str, str]]:
        """(name, text) pairs that `parse` reads back to these filters: a URL's query, the API's parameters."""
        pairs = []
        for name, value in self._values.items():
            spec = BY_NAME[name]
            pairs += [(name, spec.show(v)) for v in (value if spec.many else (value,))]
        return pairs

    def merged(self, other: Filters) -> Filters:
        """Both sets of conditions; a single-valued filter given differently in each is a usage error."""
        values = {name: (*_values(self.get(name)), *_values(other.get(name))) for name in {*self, *other}}
        return Filters(**values)

    def active(self) -> bool:
        return bool(self._values)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items(), key=lambda kv: kv[0])))

    def __repr__(self) -> str:
        return f"Filters({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


def _values(value: object) -> tuple:
    return () if value is None else value if isinstance(value, tuple) else (value,)


def split_filters(words: Sequence[str]) -> tuple[list[str], Filters]:
    """Search-bar syntax: words such as `camera:x100v`, `after:2019-05`, `type:video`, `tag:beach` or
    `near:48.85,2.29,5` are filters; the rest are the query's words."""
    rest: list[str] = []
    found: dict[str, list[str]] = {}
    for word in words:
        match = _WORD.match(word.strip())
        if match is None:
            rest.append(word)
        else:
            found.setdefault(_WORDS[match.group(1).lower()], []).append(match.group(2))
    return rest, Filters(**found)
