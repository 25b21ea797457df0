"""Camera-sized JPEGs with photographic content, for benchmarks (never committed).

Each image is a random crop of one of the real CC0 photos in tests/data/photos, scaled up to
camera size, with film grain (so the JPEG is as large as a phone's: ~3-5 MB at 12 MP), a
brightness shift, and EXIF (date, camera, and orientation 6 on every fifth image).
"""

from __future__ import annotations

import argparse
import functools
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

SEEDS = sorted((Path(__file__).resolve().parent.parent / "tests" / "data" / "photos").glob("*.jpg"))
SIZES = {12: (4000, 3000), 2: (1632, 1224)}


@functools.lru_cache(maxsize=2)  # one grain field per process and size, rolled per image
def _grain(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 7, shape).astype(np.int16)


def make_one(args: tuple[Path, int, tuple[int, int]]) -> int:
    path, seed, (w, h) = args
    rng = np.random.default_rng(seed)
    src = Image.open(SEEDS[seed % len(SEEDS)]).convert("RGB")
    sw, sh = src.size
    cw, ch = int(sw * rng.uniform(0.6, 1.0)), int(sh * rng.uniform(0.6, 1.0))
    x, y = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
    img = src.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.int16) + int(rng.integers(-25, 26))
    arr += np.roll(_grain((h, w, 3), 1), int(rng.integers(0, h)), axis=0)[: h, : w]
    exif = Image.Exif()
    exif[271], exif[272] = "BenchCam", "Model 12"
    exif.get_ifd(0x8769)[36867] = f"2023:0{1 + seed % 9}:1{seed % 10} 12:00:00"
    if seed % 5 == 0:
        exif[274] = 6
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=92, exif=exif.tobytes())
    return path.stat().st_size


def make_photos(folder: Path, unique: int, megapixels: int, copies: int = 1, workers: int | None = None) -> list[Path]:
    """`unique` generated JPEGs, each hard-linked `copies` times (distinct paths, shared page cache)."""
    folder.mkdir(parents=True, exist_ok=True)
    size = SIZES[megapixels]
    jobs = [(folder / f"u{i:05d}.jpg", i, size) for i in range(unique) if not (folder / f"u{i:05d}.jpg").exists()]
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        list(pool.map(make_one, jobs, chunksize=4))
    paths = [folder / f"u{i:05d}.jpg" for i in range(unique)]
    for c in range(1, copies):
        sub = folder / f"copy{c}"
        sub.mkdir(exist_ok=True)
        for p in paths:
            link = sub / p.name
            if not link.exists():
                os.link(p, link)
    return sorted(folder.rglob("*.jpg"))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--unique", type=int, default=100)
    ap.add_argument("--megapixels", type=int, choices=sorted(SIZES), default=12)
    ap.add_argument("--copies", type=int, default=1)
    a = ap.parse_args()
    files = make_photos(a.folder, a.unique, a.megapixels, a.copies)
    sizes = [f.stat().st_size for f in files[: a.unique]]
    print(f"{len(files)} files, mean {np.mean(sizes) / 1e6:.2f} MB")
