"""`imgsearch serve` under load: a library of --images vectors (a few hundred real photos from
../shared/data/clothing and a dozen generated 12 MP JPEGs, indexed for real; the rest synthetic rows with
clustered vectors), served by a real `imgsearch serve` process on 127.0.0.1, asked by 1, 8 and 32
concurrent httpx clients. In the same run, the baseline: the same query from a cold `imgsearch search`
(no server), against the CLI asking the running server.

    python bench/serve.py --images 100000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx

from bench_models import save_random_model
from photos import make_photos
from vector_search import add_synthetic_images, clustered

from tests.programs import start_server  # `imgsearch serve` as a user starts it

CLOTHING = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "clothing" / "train"
QUERY = "red shoes"


def build_library(lib_dir: Path, root: Path, spec, n: int, real: int) -> list[int]:
    """Index the real photos for real, then add synthetic rows up to n; returns the ids of the real photos."""
    from imgsearch import store
    from imgsearch.config import IndexSettings, SearchOptions
    from imgsearch.library import Library
    from imgsearch.search.query import Term

    sources = sorted(CLOTHING.rglob("*.jpg"))[:: max(1, len(list(CLOTHING.rglob("*.jpg"))) // real)][:real]
    (root / "clothing").mkdir(parents=True, exist_ok=True)
    for p in sources:
        shutil.copy(p, root / "clothing" / f"{p.parent.name}-{p.name}")
    make_photos(root / "camera", unique=12, megapixels=12)
    with Library.open(lib_dir, create=True) as lib:
        t = time.perf_counter()
        report = lib.index([root], spec, IndexSettings())
        print(f"indexed {report.summary()} in {time.perf_counter() - t:.0f} s", flush=True)
        with lib.session() as session:
            ids = [r.id for r in store.indexed_photos(session)]
        encoder = lib.encoder(spec)
        add_synthetic_images(lib, encoder.info, clustered(n - len(ids), encoder.info.dim))
        t = time.perf_counter()
        lib.search([Term(1.0, "text", "warm up")], SearchOptions(k=10))
        print(f"library of {n:,} images; index built in {time.perf_counter() - t:.1f} s", flush=True)
    return ids


def cli_seconds(lib_dir: Path, queries: list[str]) -> tuple[float, list[list[str]]]:
    """Median wall time of `imgsearch search QUERY` (a fresh process per query) and the paths each printed."""
    times, out = [], []
    for query in queries:
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "imgsearch", "search", query, "-L", str(lib_dir), "--paths"],
                              capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t)
        out.append(done.stdout.splitlines())
    return statistics.median(times), out


async def load(url: str, clients: int, paths: list[str]) -> tuple[list[float], float]:
    """Each of `clients` concurrent clients asks its share of `paths` in turn: (latencies in ms, requests/s)."""
    latencies: list[float] = []
    start = time.perf_counter()

    async def client(mine: list[str]) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            for path in mine:
                t = time.perf_counter()
                response = await http.get(path)
                latencies.append((time.perf_counter() - t) * 1e3)
                response.raise_for_status()

    await asyncio.gather(*(client(paths[i::clients]) for i in range(clients)))
    return latencies, len(paths) / (time.perf_counter() - start)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def first_page_bytes(url: str) -> tuple[int, list[str]]:
    """Bytes of the first results page as a browser loads it (HTML, CSS, JS, the thumbnails it shows), and any
    reference to another host."""
    with httpx.Client(base_url=url) as http:
        html = http.get("/", params={"q": QUERY}).text
        outside = [u for u in re.findall(r'(?:src|href)="([^"]+)"', html) if re.match(r"^(https?:)?//", u)]
        assets = re.findall(r'(?:src|href)="(/(?:static|api/v1/images)/[^"]+)"', html)
        return len(html.encode()) + sum(len(http.get(a.replace("&amp;", "&")).content) for a in set(assets)), outside


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--real", type=int, default=300, help="real photos among them (for thumbnails)")
    ap.add_argument("--clients", type=int, nargs="*", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=320, help="requests per measurement")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--work", type=Path, default=Path("data/generated"))
    a = ap.parse_args()
    from imgsearch.config import ModelSpec

    print(f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, model {a.model} (random weights) on the CPU", flush=True)
    spec = ModelSpec(f"local-dir:{save_random_model(a.model, a.work / f'model-{a.model}')}", None)
    base = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    lib_dir, root = base / "lib", base / "photos"
    try:
        real_ids = build_library(lib_dir, root, spec, a.images, a.real)
        # the baseline: a fresh `imgsearch search` without a server, for new texts (it loads the model) and for a
        # text the library has cached (no model, but the index is read from disk)
        cold_new_s, cold_out = cli_seconds(lib_dir, [f"{QUERY} {i}" for i in range(3)])
        cold_cached_s, _ = cli_seconds(lib_dir, [QUERY] * 3)
        process, url = start_server(lib_dir, base / "serve.log", "--preload")
        try:
            cli_seconds(lib_dir, ["warm up the server's model"])
            warm_s, warm_out = cli_seconds(lib_dir, [f"{QUERY} {i}" for i in range(3)] + [f"another {i}" for i in range(4)])
            assert warm_out[:3] == cold_out, "the server and the CLI disagree"
            rng = np.random.default_rng(0)
            rows = []
            asyncio.run(load(url, 1, [f"/api/v1/search?q={QUERY}"]))
            for clients in a.clients:
                n = a.requests
                cached = asyncio.run(load(url, clients, [f"/api/v1/search?q={QUERY}&k=60"] * n))
                new = asyncio.run(load(url, clients, [f"/api/v1/search?q=photo+{clients}+{i}&k=60" for i in range(n)]))
                similar = asyncio.run(load(url, clients, [f"/api/v1/images/{int(i)}/similar?k=60"
                                                         for i in rng.integers(1, a.images, n)]))
                thumbs = [f"/api/v1/images/{int(i)}/thumb?size=320" for i in rng.choice(real_ids, n)]
                asyncio.run(load(url, 8, sorted(set(thumbs))))  # made once: what follows is served from the cache
                warm = asyncio.run(load(url, clients, thumbs))
                rows += [(clients, "cached text query", cached), (clients, "new text query", new),
                         (clients, "similar by id", similar), (clients, "warm thumbnail", warm)]
            shutil.rmtree(lib_dir / "thumbs", ignore_errors=True)
            with httpx.Client(base_url=url) as http:
                camera = [r["id"] for r in http.get("/api/v1/search", params={"q": QUERY, "k": 1000, "folder": str(
                    root / "camera")}).json()["results"]]
            cold = asyncio.run(load(url, 1, [f"/api/v1/images/{i}/thumb?size=320" for i in camera]))
            rows.append((1, f"cold 12 MP thumbnail ({len(camera)} photos)", cold))
            page_bytes, outside = first_page_bytes(url)
        finally:
            process.terminate()
            process.wait(timeout=30)
        print(f"\n{'clients':>7}  {'request':<34} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
        for clients, name, (lat, rate) in rows:
            print(f"{clients:>7}  {name:<34} {pct(lat, 50):8.1f} {pct(lat, 99):8.1f} {rate:8.0f}")
        print(f"\nfirst results page: {page_bytes / 1e3:.0f} KB (HTML, CSS, JS and 60 thumbnails), "
              f"references to other hosts: {len(outside)}")
        print(f"`imgsearch search TEXT` (median wall time of a fresh process): asking the server {warm_s * 1e3:.0f} ms; "
              f"without a server, a new text {cold_new_s * 1e3:.0f} ms ({cold_new_s / warm_s:.1f}x slower), "
              f"a cached text {cold_cached_s * 1e3:.0f} ms ({cold_cached_s / warm_s:.1f}x slower)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
