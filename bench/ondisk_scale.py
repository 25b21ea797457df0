"""The on-disk index at 1M and 10M vectors, built as a library past RAM builds it: the spec `params.ondisk_spec`
chooses, vectors generated in a stream (never all in RAM), trained on a sample, added shard by shard, merged on
disk, tuned by the production tuner; then searched from a fresh process (its RAM, p50/p99, recall@10 against an
exact scan of the stored fp16 vectors on queries the tuner never saw). Each size in turn, in one run.

    python bench/ondisk_scale.py --sizes 1000000 10000000 [--flat-iteration]

Where the time goes is printed per phase: generating the vectors (the database's part in a library), training
(two-level k-means past params.TWO_LEVEL_MIN lists, then the product quantizer), adding the shards (coarse
assignment and PQ encoding, 2 threads), merging the lists, tuning. `--flat-iteration` also times one iteration of
the flat k-means the training ran before (FAISS's IVF default is 10 iterations) on the 1M sample, as the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import faiss

from imgsearch.vectors import ondisk
from imgsearch.vectors.build import RECALL_TARGET
from imgsearch.vectors.index import ivf_search_params
from imgsearch.vectors.params import ondisk_spec
from imgsearch.vectors.tuning import exact_top_k, sample_queries, tune

DIM, CHUNK, CLUSTERS, INTRINSIC = 512, 500_000, 1000, 64


def stream(n: int, seed: int, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Clustered unit vectors as bench/vector_search.clustered makes them (the spread in a shared 64-d subspace),
    in chunks: the centres and subspace fixed by the library's seed 0, the draws by `seed` and the chunk's place."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(CLUSTERS, DIM)).astype(np.float32)
    basis = np.linalg.qr(rng.normal(size=(DIM, INTRINSIC)))[0].T.astype(np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        r = np.random.default_rng([seed, start])
        x = (centres[r.integers(0, CLUSTERS, m)]
             + r.normal(scale=np.sqrt(DIM / INTRINSIC) * 0.9, size=(m, INTRINSIC)).astype(np.float32) @ basis
             + r.normal(scale=0.2, size=(m, DIM)).astype(np.float32))
        yield x / np.linalg.norm(x, axis=1, keepdims=True)


def search_process(folder: Path, queries: Path) -> dict:
    """Run in a fresh process: open the index, search each query twice (the first pass reads lists and re-rank
    rows from disk or the page cache, the second finds them cached), report RAM and latencies."""
    def status() -> dict[str, float]:
        with open("/proc/self/status") as f:
            rows = dict(line.split(":", 1) for line in f)
        return {k: int(rows[k].split()[0]) / 1024 for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}

    before = status()
    index = ondisk.OnDiskIndex.open(folder)
    opened = status()
    q = np.load(queries)
    passes, found = [], None
    for _ in range(2):
        times = []
        for row in q:
            t = time.perf_counter()
            _, ids = index.search(row[None], 10)
            times.append((time.perf_counter() - t) * 1e3)
            found = ids if found is None or len(found) == len(q) else np.vstack([found, ids])
        passes.append([float(np.percentile(times, 50)), float(np.percentile(times, 99))])
    after = status()
    _, ids = index.search(q, 10)
    # where a query's time goes (warm): the coarse quantizer alone, then the IVF search (coarse + list scan); the
    # rest of a search is the exact re-rank of the candidates from the fp16 copy
    nprobe, depth = int(index.params["nprobe"]), 10 * int(index.params["k_factor"])
    params, coarse_params = ivf_search_params(index.ann, nprobe)
    quantizer = faiss.extract_index_ivf(index.ann).quantizer
    split: dict[str, list[float]] = {"coarse_ms": [], "ivf_ms": []}
    for row in q:
        t = time.perf_counter()
        quantizer.search(row[None], nprobe, params=coarse_params)
        split["coarse_ms"].append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        index.ann.search(row[None], depth, params=params)
        split["ivf_ms"].append((time.perf_counter() - t) * 1e3)
    return {"rss_before": before, "rss_opened": opened, "rss_after": after, "passes": passes, "ids": ids.tolist(),
            "split_p50": {k: float(np.median(v)) for k, v in split.items()}}


def measure(n: int, base: Path, flat_iteration: bool) -> dict:
    spec = ondisk_spec(n, DIM)
    out: dict = {"n": n, "factory": spec.factory, "train_size": spec.train_size}
    print(f"\n{n:,} vectors: {spec.factory}, trained on {spec.train_size:,}", flush=True)
    t = time.perf_counter()
    train = np.concatenate(list(stream(spec.train_size, seed=1)))  # a sample of the same library (its own draws)
    out["generate_train_s"] = time.perf_counter() - t
    if flat_iteration:
        index = faiss.index_factory(DIM, spec.factory, faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(index)
        km = faiss.Clustering(DIM, ivf.nlist)
        km.niter, km.spherical, km.max_points_per_centroid = 1, True, 1 << 30
        flat = faiss.IndexFlatIP(DIM)
        t = time.perf_counter()
        km.train(train, flat)
        out["flat_iteration_s"] = time.perf_counter() - t
        print(f"  one iteration of flat k-means ({ivf.nlist:,} centroids, {len(train):,} points): "
              f"{out['flat_iteration_s']:.1f} s (the old training ran 10)", flush=True)
    marks: dict[str, float] = {}
    gen_s = [0.0]

    def shards() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        marks["trained"] = time.perf_counter()
        at = 0
        for chunk in stream(n, seed=2):
            g = time.perf_counter() - marks.get("_resume", time.perf_counter())
            gen_s[0] += max(0.0, g)
            yield np.arange(at, at + len(chunk), dtype=np.int64), chunk
            marks["_resume"] = time.perf_counter()
            at += len(chunk)
        marks["last_shard"] = time.perf_counter()

    folder = base / f"index-{n}"
    start = time.perf_counter()
    built = ondisk.build(folder, DIM, spec.factory, train, shards(), n, rerank_in_ram=False)
    done = time.perf_counter()
    del train
    out.update(train_s=marks["trained"] - start, add_s=marks["last_shard"] - marks["trained"],
               finish_merge_s=done - marks["last_shard"], build_s=done - start)
    print(f"  training {out['train_s']:.1f} s, shards added {out['add_s']:.1f} s, last adds + merge "
          f"{out['finish_merge_s']:.1f} s: build {out['build_s']:.1f} s", flush=True)
    t = time.perf_counter()
    out["tune_recall"] = tune(built, built.rerank_ids, built.rerank, RECALL_TARGET)
    out["tune_s"] = time.perf_counter() - t
    out["params"] = {k: built.params[k] for k in ("nprobe", "k_factor")}
    built.save(folder)  # the tuned parameters, as a library saves them
    print(f"  tuned in {out['tune_s']:.1f} s: nprobe {out['params']['nprobe']}, k_factor "
          f"{out['params']['k_factor']}, recall on the tuning sample {out['tune_recall']:.3f}", flush=True)
    queries = sample_queries(next(stream(100_000, seed=3)), 300, seed=11)  # not the tuner's sample
    t = time.perf_counter()
    truth = exact_top_k(built.rerank_ids, built.rerank, queries, 10)
    out["exact_scan_s"] = (time.perf_counter() - t) / len(queries)
    out["disk_mb"] = built.disk_bytes() / 1e6
    del built
    np.save(base / "queries.npy", queries)
    res = subprocess.run([sys.executable, __file__, "--search", str(folder), str(base / "queries.npy")],
                         capture_output=True, text=True, check=True)
    got = json.loads(res.stdout)
    found = np.array(got.pop("ids"))
    out["recall_at_10"] = sum(len(set(a) & set(b)) for a, b in zip(truth, found)) / truth.size
    out.update(got)
    (p1, p99_1), (p2, p99_2) = got["passes"]
    r = got["rss_after"]
    print(f"  fresh search process: recall@10 {out['recall_at_10']:.3f} (300 queries, exact scan "
          f"{out['exact_scan_s'] * 1e3:.0f} ms each); first pass p50 {p1:.2f} ms p99 {p99_1:.2f}; again p50 "
          f"{p2:.2f} ms p99 {p99_2:.2f}; RSS {r['VmRSS']:.0f} MB ({r['RssAnon']:.0f} MB anonymous, "
          f"{r['RssFile']:.0f} MB mapped file pages), {got['rss_opened']['RssAnon'] - got['rss_before']['RssAnon']:.0f}"
          f" MB anonymous taken by opening; disk {out['disk_mb']:,.0f} MB", flush=True)
    split = got.get("split_p50", {})
    print(f"  a warm query's p50 parts: coarse quantizer {split.get('coarse_ms', 0):.2f} ms, coarse + list scan "
          f"{split.get('ivf_ms', 0):.2f} ms, so re-rank and the rest {p2 - split.get('ivf_ms', 0):.2f} ms", flush=True)
    return out


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--search":
        print(json.dumps(search_process(Path(sys.argv[2]), Path(sys.argv[3]))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--flat-iteration", action="store_true")
    ap.add_argument("--dir", type=Path, default=None, help="where to build (default: a temp dir); needs ~1.1 kB/vector")
    a = ap.parse_args()
    print(f"{os.cpu_count()} cores, FAISS {faiss.__version__}, {time.strftime('%Y-%m-%d')}", flush=True)
    base = Path(tempfile.mkdtemp(prefix="bench-ondisk-scale-", dir=a.dir))
    try:
        results = [measure(n, base, a.flat_iteration and n == min(a.sizes)) for n in a.sizes]
        shutil.rmtree(base / f"index-{a.sizes[0]}", ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("\n" + json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
