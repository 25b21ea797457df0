"""Seconds from a new photo written into a watched folder to that photo being searchable, with `imgsearch watch`
running, against the same change picked up by running `imgsearch index` by hand (a fresh process: what a user
without watch does), in the same run on the same library.

A library of --photos real photos from ../shared/data/clothing is indexed first (ViT-B-32 random weights by
default: the model's load is part of what a fresh `index` pays). "Searchable" means the photo has its vector in
the library: the next search adds it to the FAISS index before it answers.

    python bench/watch_latency.py --photos 1000 --rounds 5
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CLOTHING = Path(__file__).resolve().parents[2] / "shared" / "data" / "clothing"


def searchable(lib_dir: Path, name: str) -> bool:
    from imgsearch import Library, store

    with Library.open(lib_dir) as lib, lib.session() as session:
        ids = [r.id for r in store.indexed_photos(session) if r.path.endswith("/" + name)]
        models = store.models_with_vectors(session)
        return bool(ids) and bool(models) and bool(store.photo_vectors(session, models[0].id, ids, models[0].dim))


def wait_searchable(lib_dir: Path, name: str, since: float, limit_s: float = 300) -> float:
    while time.monotonic() - since < limit_s:
        if searchable(lib_dir, name):
            return time.monotonic() - since
        time.sleep(0.05)
    raise SystemExit(f"{name} was not searchable after {limit_s} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--work", type=Path, default=Path("data/generated"))
    a = ap.parse_args()
    from bench_models import save_random_model

    model = f"local-dir:{save_random_model(a.model, a.work / f'model-{a.model}')}"
    base = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    photos, lib_dir = base / "photos", base / "lib"
    sources = sorted(CLOTHING.rglob("*.jpg"))
    photos.mkdir()
    for p in sources[:a.photos]:
        shutil.copy(p, photos / f"{p.parent.name}-{p.name}")
    spare = sources[a.photos:a.photos + 2 * a.rounds]
    subprocess.run([sys.executable, "-m", "imgsearch", "index", str(photos), "-L", str(lib_dir), "--model", model],
                   check=True, capture_output=True)
    print(f"library of {a.photos} photos, model {a.model}; {a.rounds} new photos each way", flush=True)
    by_hand, watched = [], []
    try:
        for n in range(a.rounds):  # the baseline: the photo copied in, then `imgsearch index` run by hand
            name = f"new-by-hand-{n}.jpg"
            start = time.monotonic()
            shutil.copy(spare[n], photos / name)
            subprocess.run([sys.executable, "-m", "imgsearch", "index", "-L", str(lib_dir)], check=True,
                           capture_output=True)
            by_hand.append(wait_searchable(lib_dir, name, start))
        log = (base / "watch.log").open("w")
        watcher = subprocess.Popen([sys.executable, "-m", "imgsearch", "watch", "-L", str(lib_dir)], stderr=log,
                                   stdout=subprocess.DEVNULL)
        while "Watching" not in (base / "watch.log").read_text():
            if watcher.poll() is not None:
                raise SystemExit((base / "watch.log").read_text())
            time.sleep(0.05)
        try:
            for n in range(a.rounds):
                name = f"new-watched-{n}.jpg"
                start = time.monotonic()
                shutil.copy(spare[a.rounds + n], photos / name)
                watched.append(wait_searchable(lib_dir, name, start))
        finally:
            watcher.terminate()
            watcher.wait(timeout=60)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"new photo -> searchable, median of {a.rounds}: `imgsearch index` by hand {statistics.median(by_hand):.2f} s "
          f"({', '.join(f'{t:.2f}' for t in by_hand)}); `imgsearch watch` {statistics.median(watched):.2f} s "
          f"({', '.join(f'{t:.2f}' for t in watched)}); {statistics.median(by_hand) / statistics.median(watched):.1f}x")


if __name__ == "__main__":
    main()
