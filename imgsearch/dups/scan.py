"""One duplicate search: gather the evidence, group it, describe each group with its keeper."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.config import DupOptions, DupThresholds, Tier
from imgsearch.dups import options as dup_options
from imgsearch.dups.actions import grouped_share, too_many
from imgsearch.dups.evidence import gather
from imgsearch.dups.candidates import NONE, Pair, PairTable, as_table
from imgsearch.dups.grouping import TIER_RANK, Group, Photo, close_in_time, describe, group_pairs, tier_ranks
from imgsearch.progress import Progress
from imgsearch.store.orm import Model


BORDERLINE_EACH_SIDE = 6  # pairs shown either side of the similar threshold


@dataclass(frozen=True)
class Borderline:
    """A pair of photos near the similar threshold: what the threshold means, shown before acting on it."""

    a: Photo
    b: Photo
    cosine: float
    grouped: bool  # at or above the threshold: the similar tier groups them


@dataclass
class DupReport:
    """What `imgsearch dups` found, and how."""

    groups: list[Group]
    thresholds: DupThresholds
    hashed: int  # files fingerprinted in this run (the rest came from index)
    unreadable: list[tuple[str, str]]  # (path, reason): could not be hashed now
    rescanned: int  # photos searched for candidates in this run
    full_scan: bool
    refused_by_cap: int  # links not followed: the group would pass the size cap
    refused_as_chain: int  # similar links not followed: the group would hold dissimilar photos
    elapsed_s: float
    calibration: dict | None = None  # how the similar threshold was measured on this library
    library_size: int = 0  # photos with vectors in the library
    warnings: list[str] = field(default_factory=list)
    borderline: list[Borderline] = field(default_factory=list)  # nearest the similar threshold: grouped, then not

    @property
    def grouped_share(self) -> float:
        """The share of the library's photos that the groups hold."""
        return grouped_share(self.groups, self.library_size)


def find(sessions: sessionmaker[Session], model: Model, options: DupOptions, cache_dir: Path,
         progress: Progress | None = None) -> DupReport:
    """Groups of exact, near-exact and similar copies, each with a suggested keeper; touches no photo (the candidate
    pairs are cached in `cache_dir`)."""
    options = dup_options.check(options)
    start = time.perf_counter()
    evidence = gather(sessions, model, options, cache_dir, progress)
    dates = {i: p.date for i, p in evidence.photos.items()}
    plain = tier_ranks(evidence.pairs, evidence.thresholds, pictures=evidence.pictures)  # no date condition
    ranks = plain if options.within_s is None else close_in_time(evidence.pairs, plain, dates, options.within_s)
    grouping = group_pairs(evidence.pairs, evidence.thresholds, options.tiers, evidence.vectors,
                           options.max_group, ranks=ranks)
    groups = [describe(ids, tier, evidence.photos, evidence.vectors, evidence.codes, evidence.full_hashes,
                       evidence.thresholds, options.keep, options.prefer_dirs, evidence.pictures, evidence.footage)
              for ids, tier in zip(grouping.groups, grouping.tiers)]
    groups.sort(key=lambda g: (TIER_RANK[g.tier], -len(g.members), g.keeper.path))
    report = DupReport(groups, evidence.thresholds, evidence.hashed, evidence.unreadable, evidence.rescanned,
                       evidence.full_scan, grouping.refused_by_cap, grouping.refused_as_chain,
                       time.perf_counter() - start, evidence.calibration, evidence.library_size)
    report.borderline = borderline(evidence.pairs, evidence.thresholds, evidence.photos, evidence.pictures, ranks=plain)
    if too_many(groups, report.library_size):
        report.warnings.append(
            f"the groups hold {report.grouped_share:.0%} of the library's photos: copies are rarely that many, so a "
            "threshold may be too loose for this model. Look at the groups before acting on them; acting on them "
            "needs a confirmation ({param:yes}).")
    return report


def borderline(pairs: Sequence[Pair] | PairTable, t: DupThresholds, photos: dict[int, Photo],
               pictures: dict[int, np.ndarray], each_side: int = BORDERLINE_EACH_SIDE,
               ranks: np.ndarray | None = None) -> list[Borderline]:
    """The pairs whose only tie is their cosine (not copies by bytes or pixels) nearest the similar threshold:
    up to `each_side` at or above it (grouped by the similar tier), then as many below (not grouped), each side
    closest first (`ranks`: tier_ranks of the pairs without a date condition, when already made).
    From the candidate pairs found anyway (the cache keeps them down to 0.05 below the thresholds)."""
    p = as_table(pairs)
    ranks = tier_ranks(p, t, pictures=pictures) if ranks is None else ranks
    known = np.fromiter(photos, dtype=np.int64, count=len(photos))
    alike = ~p.exact & (p.matched == NONE) & np.isin(p.a, known) & np.isin(p.b, known) \
        & (ranks != TIER_RANK[Tier.NEAR])  # a near-exact copy is not what the similar threshold decides
    above = np.flatnonzero(alike & (p.cosine >= t.similar_cosine))
    below = np.flatnonzero(alike & (p.cosine < t.similar_cosine))
    chosen = np.concatenate([above[np.argsort(p.cosine[above], kind="stable")[:each_side]],
                             below[np.argsort(-p.cosine[below], kind="stable")[:each_side]]])
    return [Borderline(photos[int(p.a[n])], photos[int(p.b[n])], float(p.cosine[n]), bool(p.cosine[n] >= t.similar_cosine))
            for n in chosen]
