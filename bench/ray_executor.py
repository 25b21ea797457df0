"""The local executor against the Ray executor on the same photos and the same machine: what Ray costs.

Photos are 640x480 JPEGs cut from the real photos in tests/data (bench/photos.py's sources); the Ray run uses a
local Ray started in this process (all cores, 1.5 GB object store), as `imgsearch index --ray local` does. Model
load time is excluded from both (the driver loads it before the clock; Ray's encoder actors load theirs inside
the run, which is part of what Ray costs).

    python bench/ray_executor.py [--photos 2000] [--model tiny|ViT-B-32] [--runtimes torch,openvino,onnx]

Per runtime, the export (OpenVINO / ONNX Runtime) is made first by a small warm-up run (not counted), so that both
timed runs find it, as the second run of a library would.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from imgsearch.config import IndexSettings, ModelSpec
from imgsearch.library import Library
from tests.test_ray import derived_photos
from tests.tinyclip import write_model


def run(lib_dir: Path, pics: Path, spec: ModelSpec, settings: IndexSettings, quiet: bool = False) -> float:
    with Library.open(lib_dir, create=True) as lib:
        lib.encoder(spec)
        start = time.perf_counter()
        report = lib.index([pics], spec, settings)
        seconds = time.perf_counter() - start
    if not quiet:
        print(f"  {report.executor:<52} {seconds:7.1f} s  {report.new / seconds:6.1f} img/s   ({report.summary()})",
              flush=True)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--model", default="tiny", help="tiny (a tiny CLIP: the pipeline's own cost) or an open_clip "
                                                    "architecture with random weights")
    ap.add_argument("--work", type=Path, default=Path("data/generated"))
    ap.add_argument("--runtimes", default="torch", help="comma-separated: torch, openvino, onnx")
    a = ap.parse_args()
    import ray

    pics = derived_photos(a.work / f"ray-photos-{a.photos}", a.photos, size=(640, 480))
    base = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        if a.model == "tiny":
            spec = ModelSpec(f"local-dir:{write_model(base / 'tiny')}", None)
        else:
            from bench_models import save_random_model

            spec = ModelSpec(f"local-dir:{save_random_model(a.model, a.work / f'model-{a.model}')}", None)
        print(f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, {a.photos} photos 640x480, model {a.model}")
        os.environ["IMGSEARCH_CACHE"] = str(base / "cache")  # exports made here, shared by both runs
        warm = derived_photos(base / "warm", 8, size=(640, 480))
        start = time.perf_counter()
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=1_500_000_000,
                 log_to_driver=False, logging_level=logging.ERROR)
        print(f"  (ray.init: {time.perf_counter() - start:.1f} s, not counted)")
        for runtime in a.runtimes.split(","):
            run(base / f"warm-{runtime}", warm, spec, IndexSettings(runtime=runtime), quiet=True)  # the export
            local = run(base / f"local-{runtime}", pics, spec, IndexSettings(runtime=runtime))
            on_ray = run(base / f"ray-{runtime}", pics, spec, IndexSettings(ray="local", runtime=runtime))
            print(f"  {runtime}: Ray / local {on_ray / local:.2f}x the time", flush=True)
        ray.shutdown()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
