"""Vector index at scale: exact vs the IVF-PQ spec imgsearch chooses, on synthetic clustered 512-d
unit vectors, in one run; plus end-to-end text queries against a library of that size.

Prints, per size and index: build time, RAM bytes per vector (serialized size), recall@10 vs exact
on held-out queries, single-query latency p50/p99 (k=10).

    python bench/vector_search.py --sizes 100000 --e2e 100000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import faiss

from imgsearch.vectors.index import MemoryIndex, VectorIndex
from imgsearch.vectors.build import RECALL_TARGET
from imgsearch.vectors.tuning import exact_top_k, recall_at_k, sample_queries, tune
from imgsearch.vectors.params import choose_index_spec


def clustered(n: int, dim: int, clusters: int = 1000, seed: int = 0, intrinsic: int = 0) -> np.ndarray:
    """Unit vectors around random centres (CLIP image embeddings cluster by content).

    intrinsic=0: isotropic noise in all dims (near-uniform within a cluster: the hard case);
    intrinsic=r: the spread lies in a shared r-dim subspace plus a little isotropic noise, closer to
    real embeddings, whose intrinsic dimension is far below their width.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    basis = np.linalg.qr(rng.normal(size=(dim, intrinsic)))[0].T.astype(np.float32) if intrinsic else None
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        x = centres[rng.integers(0, clusters, m)]
        if basis is None:
            x = x + rng.normal(scale=0.9, size=(m, dim)).astype(np.float32)
        else:
            x = (x + rng.normal(scale=np.sqrt(dim / intrinsic) * 0.9, size=(m, intrinsic)).astype(np.float32) @ basis
                 + rng.normal(scale=0.2, size=(m, dim)).astype(np.float32))
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def latency_ms(index: VectorIndex, queries: np.ndarray) -> tuple[float, float]:
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search(q, 10)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def size_of(index: VectorIndex) -> int:
    total = len(faiss.serialize_index(index.ann))
    if index.refine is not None:
        total += len(faiss.serialize_index(index.refine))
    return total


def bench_size(n: int, dim: int, queries_n: int, intrinsic: int) -> None:
    t0 = time.perf_counter()
    vectors = clustered(n, dim, intrinsic=intrinsic)
    ids = np.arange(1, n + 1, dtype=np.int64)
    queries = sample_queries(vectors, queries_n, seed=7)  # held out from the tuning sample (seed 0)
    truth = exact_top_k(ids, vectors, queries, 10)
    kind = f"spread in a {intrinsic}-dim subspace" if intrinsic else "isotropic spread"
    print(f"n={n:,} dim={dim}, {kind}: data + exact truth for {queries_n} queries in {time.perf_counter() - t0:.0f} s",
          flush=True)
    rows = []
    start = time.perf_counter()
    exact = MemoryIndex.build(dim, ids, vectors)
    rows.append(("exact IDMap2,Flat", time.perf_counter() - start, size_of(exact) / n, 1.0, *latency_ms(exact, queries[:200])))
    del exact
    spec = choose_index_spec(n, dim)
    if spec.kind == "ivfpq":
        start = time.perf_counter()
        train = vectors[np.sort(np.random.default_rng(0).choice(n, spec.train_size, replace=False))]
        ivf = MemoryIndex.build(dim, ids, vectors, spec.factory, train)
        tuned = tune(ivf, ids, vectors, RECALL_TARGET)
        build_s = time.perf_counter() - start
        rows.append((f"chosen {spec.factory} (+fp16 re-rank; nprobe {ivf.params['nprobe']}, k_factor "
                     f"{ivf.params['k_factor']}, tuned recall {tuned:.3f})", build_s, size_of(ivf) / n,
                     recall_at_k(ivf, truth, queries), *latency_ms(ivf, queries[:200])))
    print(f"  {'index':<92} {'build s':>8} {'B/vector':>9} {'recall@10':>9} {'p50 ms':>7} {'p99 ms':>7}")
    for name, build_s, bpv, recall, p50, p99 in rows:
        print(f"  {name:<92} {build_s:8.1f} {bpv:9.0f} {recall:9.3f} {p50:7.2f} {p99:7.2f}")
    if len(rows) == 2:
        print(f"  p50 latency exact / chosen: {rows[0][4] / rows[1][4]:.1f}x", flush=True)


def add_synthetic_images(lib, model_info, vectors: np.ndarray, prefix: str = "/photos") -> None:
    """Rows for len(vectors) made-up 12 MP photos (paths under `prefix`) with these vectors, as if indexed."""
    from imgsearch import store
    from indexer.pipeline import model_record

    with lib.sessions.begin() as session:
        model_id = store.get_or_create_model(session, model_record(model_info)).id
        for start in range(0, len(vectors), 10_000):
            chunk = range(start, min(len(vectors), start + 10_000))
            ids, _ = store.save_images(session, [(store.ImageRecord(f"{prefix}/{i}.jpg", 1, 1, f"{i}", 4000, 3000,
                                                                    "JPEG"), None) for i in chunk])
            store.save_vectors(session, model_id, ids, vectors[start:start + len(ids)])


def bench_e2e(n: int, dim: int, model: str, work: Path) -> None:
    """Library.search with new texts (encoder runs) and repeated texts (cache), warm, at n images."""
    from bench_models import save_random_model

    from imgsearch.config import ModelSpec, SearchOptions
    from imgsearch.library import Library
    from imgsearch.search.query import Term

    model_dir = save_random_model(model, work / f"model-{model}")
    spec = ModelSpec(f"local-dir:{model_dir}", None)
    lib_dir = Path(tempfile.mkdtemp(prefix="bench-e2e-")) / "lib"
    with Library.open(lib_dir, create=True) as lib:
        enc = lib.encoder(spec)
        vectors = clustered(n, enc.info.dim)
        t = time.perf_counter()
        add_synthetic_images(lib, enc.info, vectors)
        lib.search([Term(1.0, "text", "warm up")], SearchOptions(k=10))  # builds the index, loads the model
        print(f"e2e: library of {n:,} images ready in {time.perf_counter() - t:.0f} s; model {model} on "
              f"{enc.device}, {os.cpu_count()} cores", flush=True)
        for label, texts in (("new text (encoder runs)", [f"a photo number {i}" for i in range(30)]),
                             ("repeated text (cached)", [f"a photo number {i}" for i in range(30)])):
            times = []
            for text in texts:
                t = time.perf_counter()
                lib.search([Term(1.0, "text", text)], SearchOptions(k=10))
                times.append((time.perf_counter() - t) * 1e3)
            print(f"  {label:<26} p50 {np.percentile(times, 50):6.1f} ms  p99 {np.percentile(times, 99):6.1f} ms")
    shutil.rmtree(lib_dir.parent)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--intrinsic", type=int, nargs="*", default=[0, 64],
                    help="data sets: 0 = isotropic clusters, r = clusters spread in an r-dim subspace")
    ap.add_argument("--threads", type=int, default=0, help="FAISS threads (0: all cores)")
    ap.add_argument("--e2e", type=int, default=0, help="also time Library.search at this many images")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--work", type=Path, default=Path("data/generated"))
    a = ap.parse_args()
    if a.threads:
        faiss.omp_set_num_threads(a.threads)
    print(f"{os.cpu_count()} cores, FAISS {faiss.__version__} with {faiss.omp_get_max_threads()} threads, "
          f"{time.strftime('%Y-%m-%d')}", flush=True)
    for n in a.sizes:
        for intrinsic in a.intrinsic:
            bench_size(n, a.dim, a.queries, intrinsic)
    if a.e2e:
        bench_e2e(a.e2e, a.dim, a.model, a.work)


if __name__ == "__main__":
    main()
