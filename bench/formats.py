"""Decoding every format to model input, next to JPEG in the same run; RAW previews against demosaicing; videos.

1. Stills: the same photographic 2 MP pictures (bench/photos.py) saved as JPEG, PNG, WebP, AVIF, HEIC and JPEG XL,
   decoded to 224x224 model input by imgsearch's loader with one worker process per core.
2. RAW: 12 MP DNGs with a full-size JPEG preview (as cameras write them) decoded through the preview, against
   LibRaw demosaicing the same files (half size, what imgsearch falls back to, and full size); and the real Kodak
   KDC in ../shared/data/raw (a bitmap thumbnail) through imgsearch against a full demosaic.
3. Video: one-minute 1280x720 H.264 clips (30 fps, a key frame every second) indexed end to end (key frames every
   2 s, ViT-B-32 with random weights on the CPU), as minutes of video per minute of wall time.

    python bench/formats.py [--count 24] [--videos 3]
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
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import save_random_model
from photos import make_photos

from imgsearch.config import IndexSettings, ModelSpec, VideoSampling
from imgsearch.images.decode import Geometry, open_rgb
from imgsearch.images.formats import register_pillow_plugins
from imgsearch.images.loader import load
from imgsearch.workers import default_workers
from tests.factories import write_dng, write_video

GEO = Geometry(224, 224)
KDC = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "raw" / "RAW_KODAK_DC50.KDC"
SAVE = {"JPEG": ("jpg", {"quality": 92}), "PNG": ("png", {}), "WEBP": ("webp", {"quality": 90}),
        "AVIF": ("avif", {"quality": 80}), "HEIF": ("heic", {"quality": 80}), "JXL": ("jxl", {"quality": 90})}


def rate(paths: list[Path], workers: int) -> float:
    """Files per second through imgsearch's loader (decode + resize to model input), all decoded."""
    start = time.perf_counter()
    items = list(load([str(p) for p in paths], GEO, 10**9, workers))
    seconds = time.perf_counter() - start
    bad = [i for i in items if not hasattr(i, "pixels")]
    assert not bad, bad[:3]
    return len(paths) / seconds


def stills(work: Path, count: int, workers: int) -> None:
    sources = make_photos(work / "src", unique=count, megapixels=2)
    print(f"\n1. stills: {count} photographic 2 MP pictures per format, {workers} decode workers")
    print(f"   {'format':<6} {'MB/file':>8} {'img/s':>8} {'vs JPEG':>8}")
    jpeg = None
    for name, (ext, options) in SAVE.items():
        folder = work / ext
        folder.mkdir(exist_ok=True)
        paths = []
        for src in sources:
            out = folder / f"{src.stem}.{ext}"
            if not out.exists():
                Image.open(src).convert("RGB").save(out, **options)  # pixels, not a JPEG to rewrap
            paths.append(out)
        per_s = rate(paths, workers)
        jpeg = jpeg or per_s
        size = np.mean([p.stat().st_size for p in paths]) / 1e6
        print(f"   {name:<6} {size:8.2f} {per_s:8.1f} {per_s / jpeg:7.2f}x", flush=True)


def raws(work: Path, count: int) -> None:
    import rawpy

    folder = work / "dng12"
    folder.mkdir(exist_ok=True)
    paths = []
    for src in make_photos(work / "src12", unique=count, megapixels=12):
        out = folder / f"{src.stem}.dng"
        if not out.exists():
            picture = Image.open(src).convert("RGB")
            write_dng(out, np.asarray(picture), preview=picture)
        paths.append(out)
    print(f"\n2. RAW: {count} 12 MP DNGs (uncompressed 16-bit) with a full-size JPEG preview, one process")

    def timed(decode) -> float:
        start = time.perf_counter()
        for p in paths:
            decode(p)
        return (time.perf_counter() - start) / len(paths) * 1e3

    def demosaic(half: bool):
        def run(p: Path) -> None:
            with rawpy.imread(str(p)) as raw:
                raw.postprocess(half_size=half, use_camera_wb=True, output_bps=8)
        return run

    preview = timed(lambda p: open_rgb(str(p), 10**9, draft_to=(224, 224)))
    half, full = timed(demosaic(True)), timed(demosaic(False))
    print(f"   imgsearch (the preview)   {preview:8.1f} ms/file")
    print(f"   LibRaw half-size demosaic {half:8.1f} ms/file ({half / preview:.1f}x slower)")
    print(f"   LibRaw full demosaic      {full:8.1f} ms/file ({full / preview:.1f}x slower)")
    if KDC.is_file():
        runs = 20
        start = time.perf_counter()
        for _ in range(runs):
            img, _ = open_rgb(str(KDC), 10**9, draft_to=(224, 224))
        ours = (time.perf_counter() - start) / runs * 1e3
        start = time.perf_counter()
        for _ in range(runs):
            demosaic(False)(KDC)
        theirs = (time.perf_counter() - start) / runs * 1e3
        print(f"   real Kodak KDC (768x512): imgsearch {ours:.1f} ms ({img.size[0]}x{img.size[1]}), full demosaic "
              f"{theirs:.1f} ms ({theirs / ours:.1f}x)")


def videos(work: Path, n: int, model: str) -> None:
    from imgsearch.library import Library

    folder = work / "videos"
    folder.mkdir(exist_ok=True)
    for i in range(n):
        out = folder / f"clip{i}.mp4"
        if out.exists():
            continue
        rng = np.random.default_rng(i)
        scenes = []
        for _ in range(12):  # a new scene every 5 s
            arr = rng.integers(0, 255, (9, 16, 3), dtype=np.uint8)
            scenes.append((5, Image.fromarray(arr).resize((1280, 720), Image.Resampling.BICUBIC)))
        write_video(out, scenes, fps=30, codec="libx264")
    spec = ModelSpec(f"local-dir:{save_random_model(model, work.parent / f'model-{model}')}", None)
    lib_dir = Path(tempfile.mkdtemp(prefix="bench-video-")) / "lib"
    try:
        with Library.open(lib_dir, create=True) as lib:
            lib.encoder(spec)  # loaded before the clock starts
            start = time.perf_counter()
            report = lib.index([folder], spec, IndexSettings(video=VideoSampling(every_s=2.0)))
            seconds = time.perf_counter() - start
        minutes = n  # one minute each
        print(f"\n3. video: {n} one-minute 1280x720 H.264 clips (30 fps, key frame every 1 s), frames every 2 s, "
              f"{model} on the CPU")
        print(f"   indexed in {seconds:.1f} s ({report.summary()})")
        print(f"   {minutes / (seconds / 60):.1f} minutes of video per minute of wall time")
    finally:
        shutil.rmtree(lib_dir.parent, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--raw-count", type=int, default=8)
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--work", type=Path, default=Path("data/generated/formats"))
    a = ap.parse_args()
    register_pillow_plugins()
    a.work.mkdir(parents=True, exist_ok=True)
    workers = default_workers()
    print(f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    stills(a.work, a.count, workers)
    raws(a.work, a.raw_count)
    videos(a.work, a.videos, a.model)


if __name__ == "__main__":
    main()
