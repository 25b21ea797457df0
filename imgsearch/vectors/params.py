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


@dataclass(frozen=True)
class IndexSpec:
    """A FAISS factory string (stored verbatim) and what it needs."""

    kind: str  # "exact" | "ivfpq"
    factory: str
    nlist: int = 0
    m: int = 0  # PQ sub-quantizers, 4 bits each
    train_size: int = 0

    def bytes_per_vector(self, dim: int) -> int:
        """RAM per vector: float32 + id for exact; PQ codes + ids + the fp16 re-rank copy for IVF-PQ."""
        if self.kind == "exact":
            return 4 * dim + 8 + 40  # IDMap2: id array + reverse map entry
        return self.m // 2 + 8 + 2 * dim + 8 + 40


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
    """Exact search for small libraries (or ones too small to train); IVF-PQ fast-scan above.

    An exact index that would not fit `memory_budget_bytes` switches to IVF-PQ earlier, as long as
    there are enough vectors to train it.
    """
    exact = IndexSpec("exact", "IDMap2,Flat")
    m = _pq_m(dim)
    trainable = n >= MIN_POINTS_PER_LIST * MIN_NLIST and m > 0
    too_big = memory_budget_bytes is not None and n * exact.bytes_per_vector(dim) > memory_budget_bytes
    if not trainable or (n <= EXACT_MAX and not too_big):
        return exact
    nlist = nlist_for(n)
    train = min(n, max(MIN_POINTS_PER_LIST * nlist, min(64 * nlist, MAX_TRAIN)))
    return IndexSpec("ivfpq", f"IVF{nlist},PQ{m}x4fs", nlist=nlist, m=m, train_size=train)


def needs_retrain(spec_kind: str, trained_count: int, n: int, dim: int) -> bool:
    """Whether an index built for `trained_count` vectors should be rebuilt now that there are n."""
    wanted = choose_index_spec(n, dim).kind
    if wanted != spec_kind:
        return True
    return spec_kind == "ivfpq" and n > RETRAIN_GROWTH * max(trained_count, 1)
