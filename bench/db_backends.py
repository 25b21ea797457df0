"""The same library on SQLite and on PostgreSQL, in one run: indexing 2,000 photos, bulk vector writes, search
latency at 100,000 images, and `db copy` both ways.

PostgreSQL is a throwaway local server (tests/postgres.py: Debian's binaries, a unix socket, fsync off as in
the tests; a production server with fsync on commits slower). The encoder is a tiny CLIP (tests/tinyclip.py) so
that the database, not the model, is what is measured.

    python bench/db_backends.py [--photos 2000] [--vectors 100000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from vector_search import add_synthetic_images, clustered

from imgsearch.config import IndexSettings, ModelSpec, SearchOptions
from imgsearch.library import Library
from imgsearch.search.query import Term
from tests.postgres import PostgresServer
from tests.tinyclip import write_model


def photos(folder: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = folder / f"{i:05d}.jpg"
        if not path.exists():
            small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
            Image.fromarray(small).resize((320, 240), Image.Resampling.BICUBIC).save(path, quality=85)
    return folder


def bench_backend(name: str, lib_dir: Path, url: str | None, pics: Path, spec: ModelSpec, n_vectors: int) -> dict:
    """Index the photos, then bulk-write the synthetic vectors; the library is left open for searches (out["lib"])."""
    out: dict = {}
    lib = Library.open(lib_dir, create=True, db_url=url)
    encoder = lib.encoder(spec)
    start = time.perf_counter()
    report = lib.index([pics], spec, IndexSettings(workers=2))
    out["index_s"] = time.perf_counter() - start
    assert report.new == len(list(pics.iterdir())), report.summary()
    vectors = clustered(n_vectors, encoder.info.dim)
    start = time.perf_counter()
    add_synthetic_images(lib, encoder.info, vectors)
    out["write_rows_s"] = n_vectors / (time.perf_counter() - start)
    lib.search([Term(1.0, "text", "warm up")], SearchOptions(k=10))  # builds the index, caches the text
    out["lib"], out["images"] = lib, n_vectors + len(list(pics.iterdir()))
    print(f"  {name:<10} index {len(list(pics.iterdir())):,} photos {out['index_s']:6.1f} s   "
          f"bulk vector writes {out['write_rows_s']:9,.0f} rows/s", flush=True)
    return out


def search_latency(backends: dict[str, dict], rounds: int = 10, per_round: int = 50) -> None:
    """A cached text search, the backends taking turns (rounds of per_round searches each), so that a drift in the
    machine's speed falls on both: p50 and p99 over all of a backend's searches."""
    times: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(rounds):
        for name, out in backends.items():
            for _ in range(per_round):
                t = time.perf_counter()
                out["lib"].search([Term(1.0, "text", "warm up")], SearchOptions(k=10))
                times[name].append((time.perf_counter() - t) * 1e3)
    for name, out in backends.items():
        out["search_p50_ms"] = statistics.median(times[name])
        out["search_p99_ms"] = float(np.percentile(times[name], 99))
        print(f"  {name:<10} cached text search at {out['images']:,}: p50 {out['search_p50_ms']:.2f} ms, "
              f"p99 {out['search_p99_ms']:.2f} ms ({len(times[name])} searches)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--vectors", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=Path("data/generated/db"))
    a = ap.parse_args()
    pics = photos(a.work / f"photos-{a.photos}", a.photos)
    base = Path(tempfile.mkdtemp(prefix="bench-db-"))
    server = PostgresServer().start()
    try:
        spec = ModelSpec(f"local-dir:{write_model(base / 'tiny')}", None)
        print(f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, PostgreSQL on a local unix socket (fsync off)")
        sqlite = bench_backend("SQLite", base / "sqlite", None, pics, spec, a.vectors)
        postgres = bench_backend("PostgreSQL", base / "pg", server.create_database("bench"), pics, spec, a.vectors)
        search_latency({"SQLite": sqlite, "PostgreSQL": postgres})
        sqlite["lib"].close()
        postgres["lib"].close()
        print(f"  PostgreSQL / SQLite: bulk writes {postgres['write_rows_s'] / sqlite['write_rows_s']:.2f}x, "
              f"indexing time {postgres['index_s'] / sqlite['index_s']:.2f}x, "
              f"search p50 {postgres['search_p50_ms'] / sqlite['search_p50_ms']:.2f}x")
        for label, lib_dir, target in (("SQLite -> PostgreSQL", base / "sqlite", server.create_database("copy")),
                                       ("PostgreSQL -> SQLite", base / "pg", f"sqlite:///{base / 'copy.db'}")):
            with Library.open(lib_dir) as lib:
                done = lib.copy_database(target)
            print(f"  db copy {label}: {done.rows:,} rows in {done.seconds:.1f} s ({done.rows / done.seconds:,.0f} rows/s, "
                  f"counts and {done.vectors:,} vectors verified)", flush=True)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
