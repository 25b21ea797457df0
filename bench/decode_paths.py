"""Decode-only rates: Pillow draft workers alone, the GPU (nvJPEG) decoder alone with its internal
split, and both together at several worker counts. No encoder, no database: the ceiling of (a).

    python bench/decode_paths.py --megapixels 12 --count 512
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from photos import make_photos

from imgsearch.images.decode import Geometry, read_file, read_header
from imgsearch.images.loader import StageTimes, load

GEO = Geometry(224, 224)


def rate(paths: list[str], workers: int, decoder) -> tuple[float, StageTimes]:
    times = StageTimes()
    start = time.perf_counter()
    n = sum(1 for _ in load(paths, GEO, 10**9, workers, decoder, times))
    return n / (time.perf_counter() - start), times


def gpu_split(paths: list[str]) -> str:
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    from imgsearch.images.gpu import fit, orient

    files = [read_file(p) for p in paths[:64]]
    sync = torch.cuda.synchronize
    t0 = time.perf_counter()
    heads = [read_header(f.data, 10**9) for f in files]
    t1 = time.perf_counter()
    datas = [torch.frombuffer(f.data, dtype=torch.uint8) for f in files]
    t2 = time.perf_counter()
    imgs = decode_jpeg(datas, mode=ImageReadMode.RGB, device="cuda")
    sync()
    t3 = time.perf_counter()
    groups: dict = {}
    for im, (_, o) in zip(imgs, heads):
        groups.setdefault(tuple(orient(im, o).shape), []).append(orient(im, o))
    for members in groups.values():
        for i in range(0, len(members), 8):
            fit(torch.stack(members[i:i + 8]), GEO)
    sync()
    t4 = time.perf_counter()
    n = len(files)
    return (f"GPU decoder split per image: header {1e3 * (t1 - t0) / n:.2f} ms, to tensor {1e3 * (t2 - t1) / n:.2f} ms, "
            f"decode_jpeg {1e3 * (t3 - t2) / n:.2f} ms, orient+fit {1e3 * (t4 - t3) / n:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--megapixels", type=int, choices=(2, 12), default=12)
    ap.add_argument("--unique", type=int, default=64)
    ap.add_argument("--count", type=int, default=512)
    ap.add_argument("--workers", type=int, nargs="*", default=[16, 12, 8])
    ap.add_argument("--work", type=Path, default=Path("data/generated"))
    a = ap.parse_args()
    import torch

    files = make_photos(a.work / f"photos-{a.megapixels}mp", a.unique, a.megapixels, -(-a.count // a.unique))
    paths = [str(f) for f in files[: a.count]]
    for p in paths:  # warm the page cache: we measure decoding, not the disk
        Path(p).read_bytes()
    print(f"{len(paths)} x {a.megapixels} MP JPEGs")
    for w in a.workers:
        r, t = rate(paths, w, None)
        print(f"Pillow draft, {w:2d} workers:            {r:8.1f} img/s")
    if torch.cuda.is_available():
        from imgsearch.images.gpu import TensorDecoder

        dec = TensorDecoder(GEO, "cuda", 10**9)
        rate(paths[:64], 0, dec)  # warm-up (nvJPEG handles, kernels)
        print(gpu_split(paths))
        r, t = rate(paths, 0, dec)
        print(f"GPU alone (nvJPEG):                   {r:8.1f} img/s  (gpu {t.gpu_images}, cpu {t.cpu_images})")
        for w in a.workers:
            r, t = rate(paths, w, dec)
            print(f"GPU + {w:2d} Pillow workers:             {r:8.1f} img/s  (gpu {t.gpu_images}, cpu {t.cpu_images})")


if __name__ == "__main__":
    main()
