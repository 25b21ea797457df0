"""One IVF-PQ index built in RAM in one go against the same index built in shards and merged on disk
(imgsearch/vectors/ondisk.py), on synthetic clustered 512-d vectors: build time, RAM, disk, recall@10 against exact
search, single-query latency. Same factory, same training sample, same nprobe and re-rank depth for both.

    python bench/ondisk_index.py [--n 1000000] [--shards 8] [--factory IVF4096,PQ64]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import faiss

from vector_search import clustered

from imgsearch.vectors import ondisk
from imgsearch.vectors.tuning import exact_top_k, sample_queries

NPROBE, K_FACTOR = 32, 10


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return sum(len(set(t) & set(f)) for t, f in zip(truth, found)) / truth.size


def latency_ms(search, queries: np.ndarray) -> tuple[float, float]:
    times = []
    for q in queries:
        t = time.perf_counter()
        search(q[None])
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--factory", default="IVF4096,PQ64")
    ap.add_argument("--train", type=int, default=200_000)
    a = ap.parse_args()
    print(f"{os.cpu_count()} cores, FAISS {faiss.__version__}, {time.strftime('%Y-%m-%d')}; n={a.n:,} dim={a.dim} "
          f"{a.factory}, nprobe {NPROBE}, re-rank depth {K_FACTOR}x", flush=True)
    vectors = clustered(a.n, a.dim, intrinsic=64)
    ids = np.arange(a.n, dtype=np.int64)
    train = vectors[np.sort(np.random.default_rng(0).choice(a.n, a.train, replace=False))]
    queries = sample_queries(vectors, 300, seed=7)
    truth = exact_top_k(ids, vectors, queries, 10)
    base = Path(tempfile.mkdtemp(prefix="bench-ondisk-"))
    try:
        # one index, in RAM, filled in one go; re-ranked from an fp16 copy in RAM
        rss0, start = rss_mb(), time.perf_counter()
        single = faiss.index_factory(a.dim, a.factory, faiss.METRIC_INNER_PRODUCT)
        single.train(train)
        single.add_with_ids(vectors, ids)
        copy = vectors.astype(np.float16)
        single_s, single_mb = time.perf_counter() - start, rss_mb() - rss0
        faiss.extract_index_ivf(single).nprobe = NPROBE

        def single_search(q: np.ndarray) -> np.ndarray:
            _, cand = single.search(q, 10 * K_FACTOR)
            cand = cand[0][cand[0] >= 0]
            return cand[np.argsort(-(copy[cand].astype(np.float32) @ q[0]))[:10]]

        found = np.array([single_search(q[None]) for q in queries])
        single_recall, single_lat = recall(found, truth), latency_ms(single_search, queries[:200])
        single_disk = len(faiss.serialize_index(single)) + copy.nbytes
        single = copy = None  # freed before the on-disk build is measured
        # the same, built in shards and merged on disk; re-rank copy memory-mapped
        rss0, start = rss_mb(), time.perf_counter()
        built = ondisk.build(base / "index", a.dim, a.factory, train, ondisk.shards_of(ids, vectors, a.shards), a.n,
                             rerank_in_ram=False, params={"nprobe": NPROBE, "k_factor": K_FACTOR})
        sharded_s, sharded_mb = time.perf_counter() - start, rss_mb() - rss0
        sharded_recall = recall(built.search(queries, 10)[1], truth)
        sharded_lat = latency_ms(lambda q: built.search(q, 10), queries[:200])
        print(f"\n  {'build':<44} {'time s':>7} {'RSS +MB':>8} {'disk MB':>8} {'recall@10':>9} {'p50 ms':>7} {'p99 ms':>7}")
        print(f"  {'one index in RAM (+ fp16 copy in RAM)':<44} {single_s:7.1f} {single_mb:8.0f} "
              f"{single_disk / 1e6:8.0f} {single_recall:9.3f} {single_lat[0]:7.2f} {single_lat[1]:7.2f}")
        print(f"  {f'{a.shards} shards merged on disk (+ fp16 copy mmapped)':<44} {sharded_s:7.1f} {sharded_mb:8.0f} "
              f"{built.disk_bytes() / 1e6:8.0f} {sharded_recall:9.3f} {sharded_lat[0]:7.2f} {sharded_lat[1]:7.2f}")
        print(f"  RAM the on-disk index keeps: {built.ram_bytes() / 1e6:.0f} MB ({built.ram_bytes() / a.n:.0f} B/vector); "
              f"peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
