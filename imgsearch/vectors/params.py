"""choose_index_spec: which FAISS index a library of n vectors gets. Pure; grid-tested."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Below this many vectors an exact scan answers within a few ms on 2 cores (see BENCHMARKS.md):
# IVF-PQ adds training time and approximate candidates for nothing.
EXACT_MAX = 50_000
MIN_POINTS_PER_LIST = 39  # FAISS k-means warns below this: never train an IVF with less
MIN_NLIST = 16
MAX_NLIST = 65_536
MAX_TRAIN = 500_000  # k-means sample cap (more barely moves the centroids), unless 39 per list needs more
RETRAIN_GROWTH = 4  # retrain once the library outgrows its training size this many times
# From here on (or earlier, when the in-RAM index would not fit the memory budget) the inverted lists live on disk:
# IVF with 2^16-2^18 lists and 8-bit PQ codes, built in shards and merged (faiss.contrib.ondisk), the re-rank copy
# in RAM or memory-mapped. (4-bit fast-scan codes cannot be merged on disk.)
ONDISK_MIN = 10_000_000
ONDISK_NLIST = (1 << 16, 1 << 18)
ONDISK_TRAIN = 2_000_000  # k-means sample for 2^16+ lists: ~15-30 points per list, as autofaiss samples
# From this many lists the centroids are searched through an HNSW graph (FAISS's IVF{n}_HNSW32) instead of a flat
# scan: a flat scan of 2^17 centroids cost 34 ms a query on 2 cores, the graph 0.16 ms (BENCHMARKS.md).
COARSE_HNSW_MIN = 1 << 14
# From this many lists a CPU trains the centroids by two-level k-means (vectors/index.train_ivf): flat k-means of
# 2^16 lists on 2.5M points is hours on 2 cores, two levels minutes (BENCHMARKS.md, "10M vectors on disk").
TWO_LEVEL_MIN = COARSE_HNSW_MIN


def coarse(nlist: int) -> str:
    """The factory's coarse quantizer part: IVF{nlist}, with an HNSW graph over the centroids when there are many."""
    return f"IVF{nlist}_HNSW32" if nlist >= COARSE_HNSW_MIN else f"IVF{nlist}"


@dataclass(frozen=True)
class IndexSpec:
    """A FAISS factory string (stored verbatim) and what it needs."""

    kind: str  # "exact" | "ivfpq" (in RAM) | "ondisk" (inverted lists on disk)
    factory: str
    nlist: int = 0
    m: int = 0  # PQ sub-quantizers: 4 bits each for ivfpq, 8 bits for ondisk
    train_size: int = 0
    rerank: str = "ram"  # where the fp16 re-rank copy lives: "ram", or "mmap" (memory-mapped from disk)

    def bytes_per_vector(self, dim: int) -> int:
        """RAM per vector: float32 + id for exact; PQ codes + ids + the fp16 re-rank copy for IVF-PQ; for an
        on-disk index only the ids' map and, unless memory-mapped, the re-rank copy (codes are read from disk)."""
        if self.kind == "exact":
            return 4 * dim + 8 + 40  # IDMap2: id array + reverse map entry
        if self.kind == "ondisk":
            return 8 + (2 * dim if self.rerank == "ram" else 0)
        return self.m // 2 + 8 + 2 * dim + 8 + 40

    def disk_bytes_per_vector(self, dim: int) -> int:
        """Disk per vector for an on-disk index: PQ codes and ids in the inverted lists, the fp16 copy, its id."""
        if self.kind != "ondisk":
            return self.bytes_per_vector(dim)  # saved as it sits in RAM
        return self.m + 8 + 2 * dim + 8


def _pq_m(dim: int) -> int:
    """4 dims per 4-bit sub-quantizer (64 bytes of codes for 512-d); fast-scan wants an even m."""
    for dims_per in (4, 2, 8, 1):
        m = dim // dims_per
        if dim % dims_per == 0 and m % 2 == 0:
            return m
    return 0


def nlist_for(n: int) -> int:
    """IVF lists for n vectors: about 4 sqrt(n), a power of two, never fewer than MIN_POINTS_PER_LIST per list."""
    target = 4 * math.sqrt(n)
    nlist = 2 ** round(math.log2(max(target, 1)))
    nlist = min(max(nlist, MIN_NLIST), MAX_NLIST)
    while nlist > MIN_NLIST and n < MIN_POINTS_PER_LIST * nlist:
        nlist //= 2
    return nlist


def choose_index_spec(n: int, dim: int, memory_budget_bytes: int | None = None) -> IndexSpec:
    """Exact search for small libraries (or ones too small to train); IVF-PQ fast-scan in RAM above; from
    ONDISK_MIN vectors (or when the in-RAM index would not fit `memory_budget_bytes`), IVF-PQ with inverted lists on
    disk and the re-rank copy in RAM, or memory-mapped when even that would not fit.

    An exact index that would not fit the budget switches to IVF-PQ earlier, as long as there are enough vectors
    to train it.
    """
    exact = IndexSpec("exact", "IDMap2,Flat")
    m = _pq_m(dim)
    trainable = n >= MIN_POINTS_PER_LIST * MIN_NLIST and m > 0

    def fits(spec: IndexSpec) -> bool:
        return memory_budget_bytes is None or n * spec.bytes_per_vector(dim) <= memory_budget_bytes

    if not trainable or (n <= EXACT_MAX and fits(exact)):
        return exact
    nlist = nlist_for(n)
    train = min(n, max(MIN_POINTS_PER_LIST * nlist, min(64 * nlist, MAX_TRAIN)))
    in_ram = IndexSpec("ivfpq", f"{coarse(nlist)},PQ{m}x4fs", nlist=nlist, m=m, train_size=train)
    if n < ONDISK_MIN and fits(in_ram):
        return in_ram
    return ondisk_spec(n, dim, memory_budget_bytes)


def ondisk_spec(n: int, dim: int, memory_budget_bytes: int | None = None) -> IndexSpec:
    """IVF with 2^16-2^18 lists (about 16 sqrt(n); fewer for small n, never under MIN_POINTS_PER_LIST per list)
    and 8-bit PQ of dim/8 sub-quantizers; the re-rank copy memory-mapped when it would not fit the budget."""
    m = max(1, dim // 8) if dim % 8 == 0 else _pq_m(dim)
    nlist = 2 ** round(math.log2(max(16 * math.sqrt(max(n, 1)), 1)))
    nlist = min(max(nlist, ONDISK_NLIST[0]), ONDISK_NLIST[1])
    while nlist > MIN_NLIST and n < MIN_POINTS_PER_LIST * nlist:
        nlist //= 2
    train = min(n, max(MIN_POINTS_PER_LIST * nlist, min(ONDISK_TRAIN, 32 * nlist)))
    spec = IndexSpec("ondisk", f"{coarse(nlist)},PQ{m}", nlist=nlist, m=m, train_size=train)
    if memory_budget_bytes is not None and n * spec.bytes_per_vector(dim) > memory_budget_bytes:
        spec = IndexSpec("ondisk", spec.factory, nlist=nlist, m=m, train_size=train, rerank="mmap")
    return spec


def needs_retrain(spec_kind: str, trained_count: int, n: int, dim: int, memory_budget_bytes: int | None = None) -> bool:
    """Whether an index built for `trained_count` vectors should be rebuilt now that there are n (an on-disk
    index also folds its in-RAM additions in: see vectors/ondisk.py)."""
    wanted = choose_index_spec(n, dim, memory_budget_bytes).kind
    if wanted != spec_kind:
        return True
    return spec_kind != "exact" and n > RETRAIN_GROWTH * max(trained_count, 1)
