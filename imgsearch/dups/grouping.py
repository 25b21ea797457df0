"""Duplicate photos in three tiers: exact (same bytes), near-exact (same picture, other encoding, size,
light edit or orientation) and similar (burst shots, the same scene).

Pure: evidence and arrays in, groups out. Every threshold is applied to exact values (full-file
hashes, pHash bit counts, cosines of the stored vectors), never to approximate-search estimates.
Groups are union-find closures capped in size, and a similar-tier merge must keep every pair of
the group close: a chain of look-alikes cannot swallow unrelated photos. Nothing here touches a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from imgsearch.config import DUP_TIERS, DupThresholds, Tier
from imgsearch.dups.candidates import NONE, Pair, PairTable, as_table
from imgsearch.dups.hashing import hamming, same_pictures, trimmed_bars
from imgsearch.images.fingerprint import TRANSFORMS
from imgsearch.dups.videos import same_footage
from imgsearch.errors import UsageError
from imgsearch.fs import is_inside
from imgsearch.images import formats

SIMILAR_LINK_SLACK = 0.05  # a merged similar group keeps every pair >= similar_cosine - this


TIER_RANK: dict[str, int] = {tier: n for n, tier in enumerate(DUP_TIERS)}


NO_TIER = -1  # in tier_ranks: the pair qualifies for no tier


def _near_by_hashes(p: PairTable, t: DupThresholds) -> np.ndarray:
    """Per pair: the hashes say the same pixels (coarse and fine codes) or a trimmed copy (an inner crop's fine
    code)."""
    hashed = ~p.exact & (p.matched == NONE) & (p.hamming != NONE) & (p.cosine >= t.near_cosine)
    same_pixels = (p.hamming <= t.near_hamming) & (p.fine != NONE) & (p.fine <= t.near_fine)
    return hashed & (same_pixels | ((p.crop != NONE) & (p.crop <= t.near_crop)))


def _checked_on_pixels(p: PairTable, t: DupThresholds, pictures: dict[int, np.ndarray] | None) -> np.ndarray:
    """The pixel check's verdict for every pair the hashes call near-exact, in one vectorised pass (False for the
    others, and for pairs without pictures: a file unreadable when hashed is never a near-exact copy)."""
    verdict = np.zeros(len(p), dtype=bool)
    if not pictures:
        return verdict
    rows = np.flatnonzero(_near_by_hashes(p, t))
    rows = rows[[int(p.a[n]) in pictures and int(p.b[n]) in pictures for n in rows]] if len(rows) else rows
    if len(rows):
        verdict[rows] = same_pictures(np.stack([pictures[int(i)] for i in p.a[rows]]),
                                      np.stack([pictures[int(i)] for i in p.b[rows]]),
                                      p.transform[rows].astype(np.int64),
                                      trimmed_bars(p.crop[rows], t.near_crop))
    return verdict


def tier_ranks(pairs: Sequence[Pair] | PairTable, t: DupThresholds, dates: dict[int, datetime] | None = None,
               within_s: float | None = None, pictures: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Per pair, the strongest tier it qualifies for (its TIER_RANK), or NO_TIER; vectorised over the table.
    Near-exact: the hashes say the same pixels (the fine code) or a trimmed copy (an inner crop's), and which
    flip/rotation lines the two up; the pictures themselves (`pictures`: each photo's pixel code) must then agree.
    Videos by their key frames, each checked as photos are (dups.videos). The model's cosine decides nothing for
    copies (`near_cosine` is an optional floor); it decides the similar tier (within `within_s` seconds of each
    other's date, when given)."""
    p = as_table(pairs)
    ranks = np.full(len(p), NO_TIER, dtype=np.int8)
    ranks[(p.cosine >= t.similar_cosine) & (p.matched == NONE)] = TIER_RANK[Tier.SIMILAR]
    ranks[_checked_on_pixels(p, t, pictures)] = TIER_RANK[Tier.NEAR]
    for n in np.flatnonzero(p.matched != NONE):
        ranks[n] = TIER_RANK[Tier.NEAR] if same_footage(int(p.matched[n]), int(p.frames[n])) else NO_TIER
    ranks[p.exact] = TIER_RANK[Tier.EXACT]
    return ranks if within_s is None else close_in_time(p, ranks, dates, within_s)


def close_in_time(pairs: PairTable, ranks: np.ndarray, dates: dict[int, datetime] | None,
                  within_s: float) -> np.ndarray:
    """`ranks` (tier_ranks without a date condition) with the similar pairs not taken within `within_s` seconds of
    each other (both dates known) qualifying for no tier: copies stay copies whenever they were taken."""
    known = dates or {}
    similar = np.flatnonzero(ranks == TIER_RANK[Tier.SIMILAR])
    far = [not (int(a) in known and int(b) in known and abs((known[int(a)] - known[int(b)]).total_seconds()) <= within_s)
           for a, b in zip(pairs.a[similar], pairs.b[similar])]
    out = ranks.copy()
    out[similar[np.array(far, dtype=bool)] if len(similar) else similar] = NO_TIER
    return out


def pair_tier(pair: Pair, t: DupThresholds, dates: dict[int, datetime] | None = None,
              within_s: float | None = None, pictures: dict[int, np.ndarray] | None = None) -> Tier | None:
    """The strongest tier one pair qualifies for, or None (see tier_ranks)."""
    rank = int(tier_ranks([pair], t, dates, within_s, pictures)[0])
    return None if rank == NO_TIER else DUP_TIERS[rank]


@dataclass(frozen=True)
class Photo:
    """What the keeper choice and the output need to know about one image."""

    id: int
    path: str
    width: int
    height: int
    size: int
    exif_fields: int  # how many of date taken, camera make, model, GPS are known
    date: datetime  # date taken, else file time
    format: str | None = None  # as Pillow names it: JPEG, PNG...
    mtime_ns: int = 0


def keeper_key(p: Photo, preferred: bool = False, shared_orientation: int = 0) -> tuple:
    """Sort key, best first: in a preferred folder, highest resolution, the original format, the orientation
    the others share (not the mirrored or rotated copy), richest EXIF, oldest file, largest file, path."""
    return (not preferred, -(p.width * p.height), formats.original_rank(p.format), -shared_orientation, -p.exif_fields,
            p.mtime_ns or p.date.timestamp() * 1e9, -p.size, p.path)


KEEPER_REASONS = ("in a preferred folder", "highest resolution", "original format", "not flipped or rotated",
                  "richest EXIF", "oldest file", "largest file", "first by path (the copies are otherwise equal)")


@dataclass
class Member:
    photo: Photo
    relation: str  # keeper | exact | near | similar | linked (related to the keeper only through others)
    cosine: float | None = None  # to the keeper
    hamming: int | None = None  # coarse pHash distance to the keeper
    transform: str | None = None
    fine: int | None = None  # fine pHash distance to the keeper
    crop: int | None = None  # fine distance between an inner crop of one and the other
    frames: tuple[int, int] | None = None  # videos: key frames of the shorter matching the other's, of how many

    @property
    def key_frames(self) -> str | None:
        """A video's evidence in words: "9 of 10 key frames"."""
        return f"{self.frames[0]} of {self.frames[1]} key frames" if self.frames else None


@dataclass
class Group:
    tier: str  # the weakest link that holds the group together
    keeper: Photo
    members: list[Member] = field(default_factory=list)  # keeper first
    keeper_reason: str = ""  # why this one is the keeper

    @property
    def duplicates(self) -> list[Member]:
        return self.members[1:]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.items: dict[int, list[int]] = {}
        self.tier: dict[int, int] = {}

    def find(self, x: int) -> int:
        if x not in self.parent:
            self.parent[x], self.items[x], self.tier[x] = x, [x], 0
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, ra: int, rb: int, rank: int) -> None:
        if len(self.items[ra]) < len(self.items[rb]):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.items[ra].extend(self.items.pop(rb))
        self.tier[ra] = max(self.tier[ra], self.tier.pop(rb), rank)


@dataclass
class Grouping:
    groups: list[list[int]]  # image ids, each group's tier in `tiers`
    tiers: list[str]
    refused_by_cap: int = 0  # links not followed because the group would pass max_group
    refused_as_chain: int = 0  # similar links not followed because the group would hold dissimilar photos


def group_pairs(pairs: Sequence[Pair] | PairTable, t: DupThresholds, wanted: Sequence[str],
                vectors: dict[int, np.ndarray], max_group: int, dates: dict[int, datetime] | None = None,
                within_s: float | None = None, pictures: dict[int, np.ndarray] | None = None,
                ranks: np.ndarray | None = None) -> Grouping:
    """Union-find over qualifying pairs, strongest first, with the size cap and the similar-tier linkage
    (`ranks`: tier_ranks of the pairs, when already made)."""
    p = as_table(pairs)
    weakest = max(TIER_RANK[w] for w in wanted)
    ranks = tier_ranks(p, t, dates, within_s, pictures) if ranks is None else ranks
    rows = np.flatnonzero((ranks != NO_TIER) & (ranks <= weakest))
    rows = rows[np.lexsort((-p.cosine[rows], ranks[rows]))]  # strongest tier first, then closest first
    uf = _UnionFind()
    out = Grouping([], [])
    floor = t.similar_cosine - SIMILAR_LINK_SLACK
    similar = TIER_RANK[Tier.SIMILAR]
    for rank, a, b in zip(ranks[rows].tolist(), p.a[rows].tolist(), p.b[rows].tolist()):
        ra, rb = uf.find(a), uf.find(b)
        if ra == rb:
            continue
        if len(uf.items[ra]) + len(uf.items[rb]) > max_group:
            out.refused_by_cap += 1
            continue
        if rank == similar and _min_cosine(uf.items[ra], uf.items[rb], vectors) < floor:
            out.refused_as_chain += 1
            continue
        uf.union(ra, rb, rank)
    for root, items in uf.items.items():
        tier = DUP_TIERS[uf.tier[root]]
        if len(items) > 1 and tier in wanted:
            out.groups.append(sorted(items))
            out.tiers.append(tier)
    return out


def _min_cosine(a: list[int], b: list[int], vectors: dict[int, np.ndarray]) -> float:
    va = np.stack([vectors[i] for i in a])
    vb = np.stack([vectors[i] for i in b])
    return float((va @ vb.T).min())


def describe(ids: Sequence[int], tier: str, photos: dict[int, Photo], vectors: dict[int, np.ndarray],
             codes: dict[int, np.ndarray], full_hashes: dict[int, str], t: DupThresholds,
             keep: Sequence[str] = (), prefer_dirs: Sequence[str] = (),
             pictures: dict[int, np.ndarray] | None = None,
             footage: dict[tuple[int, int], tuple[int, int]] | None = None) -> Group:
    """A group with its keeper (one of `keep` when it is in the group, else the best by keeper_key), why that one,
    and each member's evidence against it (`footage`: videos' matching key frames by (id, id), lower id first)."""
    members = [photos[i] for i in ids]
    shared = {p.id: sum(1 for q in members if q.id != p.id and p.id in codes and q.id in codes
                        and hamming(codes[p.id], codes[q.id])[1] == 0) for p in members}
    keys = {p.id: keeper_key(p, any(is_inside(p.path, d) for d in prefer_dirs), shared[p.id]) for p in members}
    members.sort(key=lambda p: keys[p.id])
    chosen = [p for p in members if p.path in set(keep)]
    if len(chosen) > 1:  # honoured or refused, never one of them silently
        raise UsageError(f"{{param}} names {len(chosen)} photos of one group ({', '.join(p.path for p in chosen)}): a "
                         "group has one keeper; keep one of them", "keep")
    keeper = chosen[0] if chosen else members[0]
    if chosen:
        reason = "chosen by you"
    else:
        runner_up = keys[members[1].id]
        reason = next(KEEPER_REASONS[n] for n, (a, b) in enumerate(zip(keys[keeper.id], runner_up)) if a != b) \
            if keys[keeper.id] != runner_up else KEEPER_REASONS[-1]
        if reason == "original format":
            reason += f" ({keeper.format}; the others are conversions)"
        elif reason == "highest resolution":
            reason += f" ({keeper.width}x{keeper.height})"
    group = Group(tier, keeper, [Member(keeper, "keeper")], reason)
    for p in members:
        if p.id == keeper.id:
            continue
        cos = float(vectors[p.id] @ vectors[keeper.id])
        ham = tr = fine = crop = None
        if p.id in codes and keeper.id in codes:
            ham, tr, fine, crop = hamming(codes[keeper.id], codes[p.id])
        exact = full_hashes.get(p.id) is not None and full_hashes.get(p.id) == full_hashes.get(keeper.id)
        frames = (footage or {}).get((min(p.id, keeper.id), max(p.id, keeper.id)))
        relation = pair_tier(Pair(keeper.id, p.id, cos, ham, tr, fine, crop, exact, frames), t,
                             pictures=pictures) or "linked"
        group.members.append(Member(p, relation, cos, ham, TRANSFORMS[tr] if tr is not None else None, fine, crop,
                                     frames if not exact else None))
    return group
