"""A cold `imgsearch search "NEW TEXT"` (a fresh process, a text never asked before) on a library of --images
vectors: answered by the exported text tower (OpenVINO, ONNX Runtime: no torch import) against, in the same run,
the PyTorch path (open_clip loaded to embed the words). Model: ViT-B-32 with random weights (load and run time do
not depend on them); a few hundred real photos indexed for real, the rest synthetic clustered rows.

    python bench/cold_query.py --images 100000
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import save_random_model
from vector_search import add_synthetic_images, clustered

CLOTHING = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "clothing" / "train"
WORDS = ["red", "blue", "old", "striped", "wool", "summer", "linen", "black", "green", "denim", "silk", "white"]
THINGS = ["shoes", "hat", "dress", "shirt", "coat", "skirt", "shorts", "pants", "sweater", "jacket"]


def new_texts(tag: str, n: int) -> list[str]:
    """Queries no earlier run asked (the library caches text vectors)."""
    return [f"{WORDS[i % len(WORDS)]} {THINGS[(i * 7) % len(THINGS)]} {tag} {i}" for i in range(n)]


def cold(lib: Path, texts: list[str], runtime_env: str, env: dict | None = None) -> tuple[float, list[float]]:
    times = []
    for text in texts:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "imgsearch", "search", text, "-L", str(lib), "--paths"], check=True,
                       capture_output=True, text=True,
                       env={**os.environ, "IMGSEARCH_RUNTIME": runtime_env, **(env or {})})
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--real", type=int, default=200, help="real photos indexed for real")
    ap.add_argument("--queries", type=int, default=7, help="cold queries per path (the median is reported)")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--work", type=Path, default=Path("data/generated"))
    ap.add_argument("--keep", action="store_true", help="keep the library (its path is printed) for profiling")
    a = ap.parse_args()

    from imgsearch.config import IndexSettings, ModelSpec
    from imgsearch.library import Library

    model_dir = save_random_model(a.model, a.work / f"model-{a.model}")
    spec = ModelSpec(f"local-dir:{model_dir}", None)
    work = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    os.environ["IMGSEARCH_CACHE"] = str(work / "cache")  # this run's exports only (they are kept once per user)
    blocker = work / "no-torch"  # the plain install's situation: torch and open_clip cannot be imported
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nfor m in ('torch', 'torchvision', 'open_clip'):\n"
                                              "    sys.modules[m] = None\n")
    photos = work / "photos"
    photos.mkdir()
    files = sorted(CLOTHING.rglob("*.jpg"))
    for p in files[:: max(1, len(files) // a.real)][: a.real]:
        shutil.copy(p, photos / f"{p.parent.name}-{p.name}")
    lib_dir = work / "lib"
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}; {a.model}, {a.images:,} images", flush=True)
    rows = {}
    for runtime in ("onnx", "openvino"):  # the last one made is the one a query finds first (see runtimes.find)
        with Library.open(lib_dir, create=True) as lib:
            if runtime == "onnx":
                report = lib.index([photos], spec, IndexSettings(runtime=runtime))
                add_synthetic_images(lib, lib.encoder(spec).info, clustered(a.images - report.encoded,
                                                                            lib.encoder(spec).info.dim))
            else:
                lib.index([], spec, IndexSettings(runtime=runtime))
    exports = work / "cache" / "exports"
    # warm the page cache and the index file once, as any second query of a user's day would find it
    cold(lib_dir, new_texts("warm", 1), "")
    shutil.move(exports, work / "models-aside")  # no export: the PyTorch path
    rows["torch"] = cold(lib_dir, new_texts("torch", a.queries), "")
    shutil.move(work / "models-aside", exports)
    home = next(exports.iterdir())
    for runtime in ("openvino", "onnx"):
        for other in home.iterdir():  # only this runtime's export is left in place
            if not other.name.startswith(runtime) and not other.name.startswith("."):
                other.rename(work / other.name)
        rows[runtime] = cold(lib_dir, new_texts(runtime, a.queries), "")
        for other in work.iterdir():
            if other.name.startswith(("onnx-", "openvino-")):
                other.rename(home / other.name)
    rows["onnx, torch blocked"] = cold(lib_dir, new_texts("blocked", a.queries), "", {"PYTHONPATH": str(blocker)})
    base = rows["torch"][0]
    for name, (median, times) in rows.items():
        print(f"{name:20s} cold new-text query: median {median:.2f} s ({base / median:.1f}x faster than PyTorch); "
              f"all: {', '.join(f'{t:.2f}' for t in times)}", flush=True)
    if a.keep:
        print(f"library kept: {lib_dir}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
