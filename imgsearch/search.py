"""Query layer: parse text/image/arithmetic queries and filters, and rank candidates exactly.

Query words (as the shell splits them):
    beach                         a text term; consecutive words form one phrase: a dog on the beach
    beach + sunset - people       `+` and `-` as separate words combine terms
    2:dog + 0.5:@cat.jpg          N: weights a term; @PATH or @https://... is an image term
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np

from imgsearch.config import SearchOptions
from imgsearch.errors import UsageError
from imgsearch.vector_index import VectorIndex

MAX_K = 10_000
EXACT_FILTER_MAX = 50_000  # a filter leaving at most this many images is scored exactly, all of them
_WEIGHT = re.compile(r"^([+-]?\d+(?:\.\d+)?):(.*)$", re.DOTALL)
_EXT = re.compile(r"^[A-Za-z0-9]{1,10}$")
SORTS = ("score", "date", "path")


@dataclass(frozen=True)
class SearchResult:
    """One hit: 1-based rank, cosine similarity, path, and the image id in the library."""

    rank: int
    score: float
    path: str
    id: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Term:
    """One part of a query: weight * embedding(value)."""

    weight: float
    kind: str  # "text" | "image" | "url"
    value: str


def check_text(query: str) -> str:
    """The query stripped; an empty one is a usage error."""
    text = (query or "").strip()
    if not text:
        raise UsageError("empty query: give some words to search for, e.g. imgsearch search \"a dog on the beach\"")
    return text


def check_options(opts: SearchOptions) -> SearchOptions:
    if not 1 <= opts.k <= MAX_K:
        raise UsageError(f"--top must be between 1 and {MAX_K}, got {opts.k}")
    if opts.offset < 0:
        raise UsageError(f"--offset must be 0 or more, got {opts.offset}")
    if opts.min_score is not None and not -1.0 <= opts.min_score <= 1.0:  # NaN fails this too
        raise UsageError(f"--min-score is a cosine similarity between -1 and 1, got {opts.min_score}")
    if opts.sort not in SORTS:
        raise UsageError(f"--sort must be one of {', '.join(SORTS)}, got {opts.sort!r}")
    return opts


def _term(words: list[str], sign: float) -> Term:
    text = " ".join(words).strip()
    weight = 1.0
    match = _WEIGHT.match(text)
    if match:
        weight, text = float(match.group(1)), match.group(2).strip()
    if not text or text == "@":
        raise UsageError("empty query term: every + or - must be followed by a term (quote phrases: \"a dog\")")
    if text.startswith("@"):
        target = text[1:]
        kind = "url" if re.match(r"^https?://", target, re.IGNORECASE) else "image"
        return Term(sign * weight, kind, target)
    return Term(sign * weight, "text", text)


def parse_query(words: Sequence[str]) -> list[Term]:
    """Words -> terms; raises UsageError naming what is wrong."""
    terms: list[Term] = []
    current: list[str] = []
    sign = 1.0
    for word in words:
        if word in ("+", "-"):
            if current:
                terms.append(_term(current, sign))
                current = []
            elif terms or word == "+":
                raise UsageError(f"'{word}' needs a term before and after it, e.g. beach + sunset - people")
            sign = 1.0 if word == "+" else -1.0
        else:
            current.append(word)
    if current:
        terms.append(_term(current, sign))
    elif terms or sign < 0:
        raise UsageError("the query ends with an operator: put a term after the last + or -")
    if not terms:
        raise UsageError("empty query: give some words to search for, e.g. imgsearch search \"a dog on the beach\"")
    return terms


def combine(vectors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Weighted sum of unit vectors, normalised; terms that cancel out are a usage error."""
    total = (np.asarray(weights, dtype=np.float32)[:, None] * vectors).sum(axis=0)
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise UsageError("the query terms cancel each other out: change their weights")
    return (total / norm).astype(np.float32)[None, :]


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


def rank_ids(index: VectorIndex, query: np.ndarray, need: int, allowed: np.ndarray | None,
             exclude: Collection[int], min_score: float | None) -> list[tuple[int, float]]:
    """The best `need` (id, exact score) pairs among allowed ids, best first, none below min_score.

    A selective filter scores every allowed image exactly. Otherwise the index is asked for more
    and more candidates until enough pass the filter: never fewer results than exist.
    """
    floor = -np.inf if min_score is None else min_score
    excluded = np.fromiter(exclude, dtype=np.int64) if exclude else np.zeros(0, dtype=np.int64)
    if allowed is not None:
        allowed = np.setdiff1d(np.intersect1d(allowed, index.ids()), excluded)
        if len(allowed) <= EXACT_FILTER_MAX:
            return _exact(index, query, allowed, need, floor)
    depth = need + len(excluded)
    while True:
        scores, ids = index.search(query, depth)
        valid = ids[0] >= 0
        got_ids, got_scores = ids[0][valid], scores[0][valid]
        keep = ~np.isin(got_ids, excluded)
        if allowed is not None:
            keep &= np.isin(got_ids, allowed)
        hits = [(int(i), float(s)) for i, s in zip(got_ids[keep], got_scores[keep]) if s >= floor]
        exhausted = len(got_ids) < min(depth, len(index))  # IVF lists probed hold no more
        if len(hits) >= need or depth >= len(index) or (len(got_scores) and got_scores[-1] < floor):
            return hits[:need]
        if exhausted:
            pool = allowed if allowed is not None else np.setdiff1d(index.ids(), excluded)
            return _exact(index, query, pool, need, floor)
        depth = min(len(index), depth * 4)


def _exact(index: VectorIndex, query: np.ndarray, ids: np.ndarray, need: int, floor: float) -> list[tuple[int, float]]:
    best: list[tuple[int, float]] = []
    for start in range(0, len(ids), 100_000):  # bounded memory on huge libraries
        chunk = ids[start:start + 100_000]
        scores = index.score(query, chunk)
        top = np.argsort(-scores, kind="stable")[:need]
        best += [(int(chunk[i]), float(scores[i])) for i in top if scores[i] >= floor]
    best.sort(key=lambda h: -h[1])
    return best[:need]


def order(hits: list[tuple[int, float]], paths: dict[int, str], sort: str,
          dates: Callable[[Sequence[int]], dict[int, datetime]] | None = None) -> list[tuple[int, float]]:
    """Results in the order asked for (ties keep the score order); ids the DB no longer has are dropped."""
    hits = [h for h in hits if h[0] in paths]
    if sort == "path":
        return sorted(hits, key=lambda h: paths[h[0]])
    if sort == "date" and dates is not None:  # newest first, like a photo timeline; undated last
        when = dates([i for i, _ in hits])
        return sorted(hits, key=lambda h: when.get(h[0]) or datetime.min, reverse=True)
    return hits
