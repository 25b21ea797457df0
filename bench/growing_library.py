"""Search latency while the library grows: a cached text search, one after another, while another thread adds photos
in batches as an indexer commits them (each batch a new generation of the model's vectors, which the next search
folds into its index before it answers).

Library: `--images` synthetic rows and vectors (bench/vector_search.py's clustered vectors, of the size of a tiny CLIP,
which embeds the text), IVF-PQ in RAM. Printed: the search p50/p99 with the library idle, then while `--add` photos
arrive in batches of `--batch`, and their ratio (the target of issue 27: within 1.5x).

    python bench/growing_library.py [--images 1000000] [--add 100000] [--batch 1000] [--rate 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from vector_search import add_synthetic_images, clustered

from imgsearch.config import ModelSpec, SearchOptions
from imgsearch.library import Library
from imgsearch.search.query import Term
from tests.tinyclip import write_model


def searches(lib: Library, until: threading.Event | None, count: int) -> list[float]:
    times: list[float] = []
    while (until is None and len(times) < count) or (until is not None and not until.is_set()):
        start = time.perf_counter()
        lib.search([Term(1.0, "text", "a red dress")], SearchOptions(k=20))
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--add", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=1000.0, help="photos added per second (an indexer's pace)")
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-grow-"))
    try:
        spec = ModelSpec(f"local-dir:{write_model(base / 'tiny')}", None)
        with Library.open(base / "lib", create=True) as lib:
            info = lib.encoder(spec).info
            vectors = clustered(a.images + a.add, info.dim)
            start = time.perf_counter()
            add_synthetic_images(lib, info, vectors[:a.images])
            lib.search([Term(1.0, "text", "a red dress")], SearchOptions(k=20))  # builds the index, caches the text
            print(f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}: library of {a.images:,} ready in "
                  f"{time.perf_counter() - start:.0f} s ({lib.status().models[0].index_spec})", flush=True)
            idle = searches(lib, None, 200)
            done = threading.Event()

            def grow() -> None:
                began = time.perf_counter()
                for lo in range(0, a.add, a.batch):
                    add_synthetic_images(lib, info, vectors[a.images + lo:a.images + min(a.add, lo + a.batch)],
                                         prefix=f"/added/{lo}")
                    time.sleep(max(0.0, began + (lo + a.batch) / a.rate - time.perf_counter()))  # the indexer's pace
                done.set()

            start = time.perf_counter()
            writer = threading.Thread(target=grow)
            writer.start()
            busy = searches(lib, done, 0)
            writer.join()
            took = time.perf_counter() - start
            for label, t in (("idle", idle), (f"while {a.add:,} photos were added ({took:.0f} s)", busy)):
                print(f"  search {label}: {len(t)} searches, p50 {statistics.median(t):7.2f} ms, "
                      f"p99 {float(np.percentile(t, 99)):8.2f} ms", flush=True)
            print(f"  p50 while growing / idle: {statistics.median(busy) / statistics.median(idle):.2f}x "
                  f"(target <= 1.5x)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
