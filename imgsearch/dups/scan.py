"""One duplicate search: gather the evidence, group it, describe each group with its keeper."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from imgsearch.config import DupOptions, DupThresholds
from imgsearch.dups import options as dup_options
from imgsearch.dups.actions import grouped_share, too_many
from imgsearch.dups.evidence import gather
from imgsearch.dups.grouping import TIER_RANK, Group, describe, group_pairs
from imgsearch.progress import Progress
from imgsearch.store.orm import Model


@dataclass
class DupReport:
    """What `imgsearch dups` found, and how."""

    groups: list[Group]
    thresholds: DupThresholds
    hashed: int  # photos hashed in this run (the rest came from the library)
    unreadable: list[tuple[str, str]]  # (path, reason): could not be hashed now
    rescanned: int  # photos searched for candidates in this run
    full_scan: bool
    refused_by_cap: int  # links not followed: the group would pass the size cap
    refused_as_chain: int  # similar links not followed: the group would hold dissimilar photos
    elapsed_s: float
    calibration: dict | None = None  # how the similar threshold was measured on this library
    library_size: int = 0  # photos with vectors in the library
    warnings: list[str] = field(default_factory=list)

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
                       evidence.thresholds, options.keep, options.prefer_dirs, evidence.pictures)
              for ids, tier in zip(grouping.groups, grouping.tiers)]
    groups.sort(key=lambda g: (TIER_RANK[g.tier], -len(g.members), g.keeper.path))
    report = DupReport(groups, evidence.thresholds, evidence.hashed, evidence.unreadable, evidence.rescanned,
                       evidence.full_scan, grouping.refused_by_cap, grouping.refused_as_chain,
                       time.perf_counter() - start, evidence.calibration, evidence.library_size)
    if too_many(groups, report.library_size):
        report.warnings.append(
            f"the groups hold {report.grouped_share:.0%} of the library's photos: copies are rarely that many, so a "
            "threshold may be too loose for this model. Look at the groups before acting on them; acting on them "
            "needs a confirmation ({param:yes}).")
    return report
