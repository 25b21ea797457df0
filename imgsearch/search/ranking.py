"""Ranking: the best k (id, exact score) pairs for a query vector, with filters and paging; result order."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime

import numpy as np

from imgsearch.config import MAX_K, SORTS, SearchOptions
from imgsearch.errors import UsageError
from imgsearch.vectors.index import VectorIndex

EXACT_FILTER_MAX = 50_000  # a filter leaving at most this many images is scored exactly, all of them


def check_options(opts: SearchOptions) -> SearchOptions:
    if not 1 <= opts.k <= MAX_K:
        raise UsageError(f"{{param}} must be between 1 and {MAX_K}, got {opts.k}", "k")
    if opts.offset < 0:
        raise UsageError(f"{{param}} must be 0 or more, got {opts.offset}", "offset")
    if opts.min_score is not None and not -1.0 <= opts.min_score <= 1.0:  # NaN fails this too
        raise UsageError(f"{{param}} is a cosine similarity between -1 and 1, got {opts.min_score}", "min_score")
    if opts.sort not in SORTS:
        raise UsageError(f"{{param}} must be one of {', '.join(SORTS)}, got {opts.sort!r}", "sort")
    return opts


Owners = Callable[[Sequence[int]], dict[int, int]]  # index ids -> the image each stands for (a video's frames)


def rank_ids(index: VectorIndex, query: np.ndarray, need: int, allowed: np.ndarray | None,
             exclude: Collection[int], min_score: float | None, owners: Owners | None = None) -> list[tuple[int, float]]:
    """The best `need` (index id, exact score) pairs among allowed ids, best first, none below min_score, and at most
    one per image: `owners` maps index ids that stand for another image (a video's frames) to it, and only the best
    of them counts.

    A selective filter scores every allowed image exactly. Otherwise the index is asked for more
    and more candidates until enough pass the filter: never fewer results than exist.
    """
    floor = -np.inf if min_score is None else min_score
    owner_of = _Owners(owners)
    excluded = np.fromiter(exclude, dtype=np.int64) if exclude else np.zeros(0, dtype=np.int64)
    if allowed is not None:
        allowed = np.setdiff1d(np.intersect1d(allowed, index.ids()), excluded)
        if len(allowed) <= EXACT_FILTER_MAX:
            return _exact(index, query, allowed, need, floor, owner_of)
    depth = need + len(excluded)
    while True:
        scores, ids = index.search(query, depth)
        valid = ids[0] >= 0
        got_ids, got_scores = ids[0][valid], scores[0][valid]
        keep = ~np.isin(got_ids, excluded)
        if allowed is not None:
            keep &= np.isin(got_ids, allowed)
        hits = owner_of.best([(int(i), float(s)) for i, s in zip(got_ids[keep], got_scores[keep]) if s >= floor], need)
        exhausted = len(got_ids) < min(depth, len(index))  # IVF lists probed hold no more
        if len(hits) >= need or depth >= len(index) or (len(got_scores) and got_scores[-1] < floor):
            return hits
        if exhausted:
            pool = allowed if allowed is not None else np.setdiff1d(index.ids(), excluded)
            return _exact(index, query, pool, need, floor, owner_of)
        depth = min(len(index), depth * 4)


class _Owners:
    """Keeps the first (best) hit of each image; remembers the owners it has looked up."""

    def __init__(self, owners: Owners | None) -> None:
        self.lookup = owners
        self.known: dict[int, int] = {}

    def best(self, hits: list[tuple[int, float]], need: int) -> list[tuple[int, float]]:
        """`hits` best first -> at most `need` of them, one per image."""
        if self.lookup is None:
            return hits[:need]
        unknown = [i for i, _ in hits if i not in self.known]
        if unknown:
            found = self.lookup(unknown)
            self.known.update((i, found.get(i, i)) for i in unknown)
        seen: set[int] = set()
        out = []
        for i, s in hits:
            if self.known[i] not in seen:
                seen.add(self.known[i])
                out.append((i, s))
                if len(out) == need:
                    break
        return out


def _exact(index: VectorIndex, query: np.ndarray, ids: np.ndarray, need: int, floor: float,
           owner_of: _Owners) -> list[tuple[int, float]]:
    best: list[tuple[int, float]] = []
    for start in range(0, len(ids), 100_000):  # bounded memory on huge libraries
        chunk = ids[start:start + 100_000]
        scores = index.score(query, chunk)
        ranked_rows = np.argsort(-scores, kind="stable")
        take = need
        while True:  # frames of one video may fill the top: look further until `need` images are found
            top = [(int(chunk[i]), float(scores[i])) for i in ranked_rows[:take] if scores[i] >= floor]
            found = owner_of.best(top, need)
            if len(found) >= need or take >= len(ranked_rows) or len(top) < take:
                break
            take *= 4
        best += found
    best.sort(key=lambda h: -h[1])
    return owner_of.best(best, need)


TIE = 1e-5  # scores closer than this are equal (float rounding), far below what the 4 printed decimals show


def order(hits: list[tuple[int, float]], paths: dict[int, str], sort: str,
          dates: Callable[[Sequence[int]], dict[int, datetime]] | None = None) -> list[tuple[int, float]]:
    """Results in the order asked for (ties keep the score order); ids the DB no longer has are dropped. Scores within
    TIE of each other are one score, listed by path: exact copies, whose vectors differ in the last bits by their
    places in the encoder's batches, always come in the same order with the same score."""
    hits = [h for h in hits if h[0] in paths]
    if sort == "path":
        return sorted(hits, key=lambda h: paths[h[0]])
    if sort == "date" and dates is not None:  # newest first, like a photo timeline; undated last
        when = dates([i for i, _ in hits])
        return sorted(hits, key=lambda h: when.get(h[0]) or datetime.min, reverse=True)
    out: list[tuple[int, float]] = []
    run: list[tuple[int, float]] = []  # hits within TIE of the run's best: one score, listed by path
    for hit in [*sorted(hits, key=lambda h: -h[1]), None]:
        if run and (hit is None or run[0][1] - hit[1] >= TIE):
            out += [(i, run[0][1]) for i, _ in sorted(run, key=lambda h: paths[h[0]])]
            run = []
        if hit is not None:
            run.append(hit)
    return out


def combine(vectors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Weighted sum of unit vectors, normalised; terms that cancel out are a usage error."""
    total = (np.asarray(weights, dtype=np.float32)[:, None] * vectors).sum(axis=0)
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise UsageError("the query terms cancel each other out: change their weights", "query")
    return (total / norm).astype(np.float32)[None, :]
