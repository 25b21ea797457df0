"""The coarse quantizer of an IVF index with many lists: a flat scan of the centroids against an HNSW graph over them
(what params.coarse picks from 2^14 lists), at the list counts of a 10M-1B library (2^16-2^18).

Each query asks for its nprobe nearest centroids, one query at a time as a search does. Printed: the time per
query of both, and the share of the flat scan's lists the graph finds (its recall; the IVF's own recall follows it).
Centroids and queries are clustered synthetic vectors (bench/vector_search.py's), as k-means centroids are.

    python bench/coarse_quantizer.py [--nlists 65536 131072] [--dim 512]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from vector_search import clustered

from imgsearch.vectors.index import COARSE_EF_MIN, COARSE_EF_PER_PROBE


def p50_ms(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        _, ids = index.search(q[None], k)
        times.append(time.perf_counter() - start)
        found.append(ids[0])
    return float(np.median(times)) * 1e3, np.array(found)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nlists", type=int, nargs="+", default=[1 << 16, 1 << 17])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    a = ap.parse_args()
    print(f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, dim {a.dim}, {a.queries} queries one at a time")
    for nlist in a.nlists:
        data = clustered(nlist + a.queries, a.dim)
        centroids, queries = np.ascontiguousarray(data[:nlist]), np.ascontiguousarray(data[nlist:])
        flat = faiss.IndexFlatIP(a.dim)
        flat.add(centroids)
        start = time.perf_counter()
        graph = faiss.IndexHNSWFlat(a.dim, 32, faiss.METRIC_INNER_PRODUCT)
        graph.add(centroids)
        built = time.perf_counter() - start
        for nprobe in (16, 64):
            flat_ms, truth = p50_ms(flat, queries, nprobe)
            graph.hnsw.efSearch = max(COARSE_EF_MIN, COARSE_EF_PER_PROBE * nprobe)
            graph_ms, found = p50_ms(graph, queries, nprobe)
            agree = np.mean([len(set(t) & set(f)) / nprobe for t, f in zip(truth, found)])
            print(f"  {nlist:>7} lists, nprobe {nprobe:>3}: flat {flat_ms:6.2f} ms, HNSW32 (efSearch "
                  f"{graph.hnsw.efSearch}) {graph_ms:5.2f} ms = {flat_ms / graph_ms:5.0f}x faster, finding "
                  f"{agree:.3f} of the flat scan's lists (graph built in {built:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
