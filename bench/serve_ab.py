"""`imgsearch serve` under load from `ab` (ApacheBench: a C client, so the clients take little of the 2 cores the
server runs on), against the same server from an earlier commit in the same run, on the same library.

The library is bench/serve.py's: --real photos indexed for real with ViT-B-32 (random weights), the rest synthetic
rows with clustered vectors up to --images (the IVF-PQ index a library that size gets). Each server is a real
`imgsearch serve --preload` process started from its own tree (the baseline from a `git worktree` of --baseline, in
this virtualenv); `ab -k` asks each the same cached text query with 1 and 8 concurrent clients, in turn, twice.
Then searches each asked once (nothing to answer from memory): 8 client processes (Python's http.client, keep-alive)
ask "similar" of distinct photos, --distinct in all, the same photos of both servers.

    python bench/serve_ab.py --baseline 0508df4 --images 100000

Needs `ab` (Debian: apache2-utils).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import checked_out
from bench_models import save_random_model
from serve import QUERY, build_library

from tests.programs import free_port, wait_for_url

REPO = Path(__file__).resolve().parent.parent


def start(tree: Path, lib_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`python -m imgsearch serve` run from `tree` (its sources come first on the path)."""
    out = log.open("w")
    process = subprocess.Popen([sys.executable, "-m", "imgsearch", "serve", "-L", str(lib_dir), "--port",
                                str(free_port()), "--preload"], cwd=tree, stdout=out, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    return process, wait_for_url(process, log)


def ab(url: str, clients: int, requests: int) -> dict[str, float]:
    done = subprocess.run(["ab", "-q", "-l", "-k", "-c", str(clients), "-n", str(requests), url],
                          capture_output=True, text=True, check=True).stdout
    failed = int(re.search(r"Failed requests:\s+(\d+)", done).group(1))  # -l: a length that varies is no failure
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", done)
    assert failed == 0 and non_2xx is None, done
    return {"rps": float(re.search(r"Requests per second:\s+([\d.]+)", done).group(1)),
            "p50": float(re.search(r"\s50%\s+(\d+)", done).group(1)),
            "p99": float(re.search(r"\s99%\s+(\d+)", done).group(1))}


def _ask_each(job: tuple[str, int, list[str]]) -> list[float]:
    """One client: each path once, in turn, on one keep-alive connection; latencies in ms."""
    host, port, paths = job
    conn = http.client.HTTPConnection(host, port)
    out = []
    for path in paths:
        t = time.perf_counter()
        conn.request("GET", path)
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 200, (path, answer.status)
        out.append((time.perf_counter() - t) * 1000)
    return out


def each_once(url: str, clients: int, paths: list[str]) -> dict[str, float]:
    """`clients` processes asking their share of `paths` (each path once)."""
    parts = url.split("//")[1].split("/")[0].split(":")
    jobs = [(parts[0], int(parts[1]), paths[n::clients]) for n in range(clients)]
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        t = time.perf_counter()
        latencies = sorted(x for part in pool.map(_ask_each, jobs) for x in part)
        wall = time.perf_counter() - t
    return {"rps": len(latencies) / wall, "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(len(latencies) * 0.99)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, help="the commit to compare with (its schema must open the library)")
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--real", type=int, default=60)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--distinct", type=int, default=2000, help="searches each asked once, per server and round")
    ap.add_argument("--work", type=Path, default=Path("data/generated"))
    a = ap.parse_args()
    if shutil.which("ab") is None:
        sys.exit("bench/serve_ab.py needs ab: apt-get install apache2-utils")
    from imgsearch.config import ModelSpec

    base = Path(tempfile.mkdtemp(prefix="bench-serve-ab-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)  # last, after the worktree is removed
        tree = stack.enter_context(checked_out(a.baseline, base / "baseline"))
        spec = ModelSpec(f"local-dir:{save_random_model('ViT-B-32', a.work / 'model-ViT-B-32')}", None)
        build_library(base / "lib", base / "photos", spec, a.images, a.real)
        print(f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; ab -k, {a.requests} requests of "
              f"/api/v1/search?q={QUERY}&k=60 per measurement", flush=True)
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        ids = random.Random(0).sample(range(1000, a.images), a.distinct * a.rounds)
        for round_ in range(a.rounds):
            for name, source in ((f"baseline {a.baseline}", tree), ("this tree", REPO)):
                process, url = start(source, base / "lib", base / f"{name.split()[0]}.log")
                try:
                    root = url.split("?")[0].rstrip("/")
                    page = root + f"/api/v1/search?q={QUERY.replace(' ', '+')}&k=60"
                    ab(page, 1, 50)  # warm: the text's vector cached, the index in memory
                    for clients in (1, 8):
                        results.setdefault((name, f"same query, {clients}"), []).append(ab(page, clients, a.requests))
                    once = [f"/api/v1/images/{i}/similar?k=60" for i in ids[round_::a.rounds]]
                    results.setdefault((name, "each once, 8"), []).append(each_once(root, 8, once))
                finally:
                    process.terminate()
                    process.wait(timeout=30)
        print(f"\n{'server':<22} {'asked':<16} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}   (best of {a.rounds})")
        for (name, asked), runs in results.items():
            best = max(runs, key=lambda r: r["rps"])
            print(f"{name:<22} {asked:<16} {best['rps']:8.0f} {best['p50']:7.1f} {best['p99']:7.1f}")
        for asked in ("same query, 1", "same query, 8", "each once, 8"):
            new = max(r["rps"] for r in results[("this tree", asked)])
            old = max(r["rps"] for r in results[(f"baseline {a.baseline}", asked)])
            print(f"{asked}: {new / old:.2f}x the baseline's requests per second")


if __name__ == "__main__":
    main()
