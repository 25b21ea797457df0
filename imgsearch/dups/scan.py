"""One duplicate search: gather the evidence, group it, describe each group with its keeper."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.config import DupOptions, DupThresholds, Tier
from imgsearch.dups import options as dup_options
from imgsearch.dups.actions import grouped_share, too_many
from imgsearch.dups.evidence import gather
from imgsearch.dups.candidates import Pair
from imgsearch.dups.grouping import TIER_RANK, Group, Photo, describe, group_pairs, pair_tier
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


def find(sessions: sessionmaker[Session], model: Model, options: DupOptions,
         progress: Progress | None = None) -> DupReport:
    """Groups of exact, near-exact and similar copies, each with a suggested keeper; touches no photo."""
    options = dup_options.check(options)
    start = time.perf_counter()
    evidence = gather(sessions, model, options, progress)
    dates = {i: p.date for i, p in evidence.photos.items()}
    grouping = group_pairs(evidence.pairs, evidence.thresholds, options.tiers, evidence.vectors,
                           options.max_group, dates, options.within_s, evidence.pictures)
    groups = [describe(ids, tier, evidence.photos, evidence.vectors, evidence.codes, evidence.full_hashes,
                       evidence.thresholds, options.keep, options.prefer_dirs, evidence.pictures, evidence.footage)
              for ids, tier in zip(grouping.groups, grouping.tiers)]
    groups.sort(key=lambda g: (TIER_RANK[g.tier], -len(g.members), g.keeper.path))
    report = DupReport(groups, evidence.thresholds, evidence.hashed, evidence.unreadable, evidence.rescanned,
                       evidence.full_scan, grouping.refused_by_cap, grouping.refused_as_chain,
                       time.perf_counter() - start, evidence.calibration, evidence.library_size)
    report.borderline = borderline(evidence.pairs, evidence.thresholds, evidence.photos, evidence.pictures)
    if too_many(groups, report.library_size):
        report.warnings.append(
            f"the groups hold {report.grouped_share:.0%} of the library's photos: copies are rarely that many, so a "
            "threshold may be too loose for this model. Look at the groups before acting on them; acting on them "
            "needs a confirmation ({param:yes}).")
    return report


def borderline(pairs: list[Pair], t: DupThresholds, photos: dict[int, Photo], pictures: dict[int, np.ndarray],
               each_side: int = BORDERLINE_EACH_SIDE) -> list[Borderline]:
    """The pairs whose only tie is their cosine (not copies by bytes or pixels) nearest the similar threshold:
    up to `each_side` at or above it (grouped by the similar tier), then as many below (not grouped), each side
    closest first.
    From the candidate pairs found anyway (the cache keeps them down to 0.05 below the thresholds)."""
    alike = [p for p in pairs if not p.exact and p.frames is None and p.a in photos and p.b in photos]

    def nearest(side: list[Pair]) -> list[Pair]:
        out = []
        for p in side:  # closest first; a near-exact copy is not what the similar threshold decides
            if pair_tier(p, t, pictures=pictures) != Tier.NEAR:
                out.append(p)
                if len(out) == each_side:
                    break
        return out

    above = nearest(sorted((p for p in alike if p.cosine >= t.similar_cosine), key=lambda p: p.cosine))
    below = nearest(sorted((p for p in alike if p.cosine < t.similar_cosine), key=lambda p: -p.cosine))
    return [Borderline(photos[p.a], photos[p.b], p.cosine, p.cosine >= t.similar_cosine) for p in above + below]
