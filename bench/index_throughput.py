"""Indexing throughput: imgsearch end to end vs two baselines, in one run, on generated camera JPEGs.

(a) imgsearch: Library.index over the folder (crawl -> decode -> encode -> SQLite -> FAISS on disk)
(b) clip-retrieval style: torch DataLoader, all cores as workers, batch 256, full Pillow decode +
    open_clip's preprocess, fp16 autocast on CUDA (fp32 on CPU)
(c) rclip-like naive loop: batch 8, one process, full decode + open_clip's preprocess, fp32

Models get random weights (throughput does not depend on them), saved in open_clip's local-dir
format so (a) loads them through its production path. Model loading is excluded from every
figure; each path is warmed up with one batch first.

    python bench/index_throughput.py --megapixels 12 --count 60 --count-b 32 --count-c 24
    python bench/index_throughput.py --megapixels 2 --count 300 --runtimes torch,openvino,openvino-int8,onnx,onnx-int8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import save_random_model
from photos import make_photos


def run_ours(folder: Path, model_dir: Path, workers: int, gpu_decode: bool | None) -> dict:
    from imgsearch.config import IndexSettings, ModelSpec
    from imgsearch.library import Library

    lib_dir = Path(tempfile.mkdtemp(prefix="bench-lib-"))
    shutil.rmtree(lib_dir)
    spec = ModelSpec(f"local-dir:{model_dir}", None)
    with Library.open(lib_dir, create=True) as lib:
        enc = lib.encoder(spec)
        geo = enc.info.geometry
        enc.encode_pixels(np.zeros((enc.batch_size, geo.height, geo.width, 3), np.uint8))  # warm-up
        enc.transfer_s = enc.encode_s = 0.0
        report = lib.index([folder], spec, IndexSettings(workers=workers, gpu_decode=gpu_decode))
    shutil.rmtree(lib_dir)
    return {"images": report.encoded, "seconds": report.seconds, "img_s": report.encoded / report.seconds,
            "breakdown": report.times.breakdown(report.seconds)}


def run_runtime(folder: Path, model_dir: Path, workers: int, runtime: str, precision: str) -> dict:
    """(a) with an encoder runtime: a first library makes the export (timed on its own), a second one, given that
    export, indexes the same photos (timed, as every later run of a user would be)."""
    from imgsearch.config import IndexSettings, ModelSpec
    from imgsearch.library import Library

    spec = ModelSpec(f"local-dir:{model_dir}", None)
    first, second = (Path(tempfile.mkdtemp(prefix="bench-lib-")) for _ in range(2))
    shutil.rmtree(first)
    shutil.rmtree(second)
    settings = IndexSettings(workers=workers, runtime=runtime, precision=precision)
    export_s = 0.0
    if runtime != "torch":
        with Library.open(first, create=True) as lib:
            t = time.perf_counter()
            lib.encoders.for_indexing(spec, settings, [str(folder)], None)
            export_s = time.perf_counter() - t
    with Library.open(second, create=True) as lib:  # finds the export the first made (exports are per user)
        report = lib.index([folder], spec, settings)
    for d in (first, second):
        shutil.rmtree(d, ignore_errors=True)
    return {"images": report.encoded, "seconds": report.seconds, "img_s": report.encoded / report.seconds,
            "export_s": export_s, "encoder": report.executor, "warnings": report.warnings,
            "breakdown": report.times.breakdown(report.seconds)}


def _model_and_preprocess(model_dir: Path, device: str, precision: str):
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{model_dir}", device=device,
                                                                 precision=precision)
    return model.eval(), preprocess


class _Files:
    """A torch Dataset of full Pillow decodes + open_clip preprocess (clip-retrieval's reader)."""

    def __init__(self, paths: list[Path], preprocess) -> None:
        self.paths, self.preprocess = paths, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.preprocess(Image.open(self.paths[i]))


def run_dataloader(paths: list[Path], model_dir: Path, device: str) -> dict:
    import torch
    from torch.utils.data import DataLoader

    model, preprocess = _model_and_preprocess(model_dir, device, "fp32")
    size = model.visual.preprocess_cfg["size"]
    with torch.inference_mode(), torch.autocast(device, dtype=torch.float16, enabled=device == "cuda"):
        model.encode_image(torch.zeros(8, 3, *size, device=device))
        start = time.perf_counter()
        loader = DataLoader(_Files(paths, preprocess), batch_size=256, num_workers=os.cpu_count(),
                            pin_memory=device == "cuda")
        n = 0
        for batch in loader:
            f = model.encode_image(batch.to(device, non_blocking=True))
            torch.nn.functional.normalize(f.float(), dim=-1).cpu()
            n += len(batch)
    seconds = time.perf_counter() - start
    return {"images": n, "seconds": seconds, "img_s": n / seconds}


def run_naive(paths: list[Path], model_dir: Path, device: str) -> dict:
    import torch
    from PIL import Image

    model, preprocess = _model_and_preprocess(model_dir, device, "fp32")
    size = model.visual.preprocess_cfg["size"]
    with torch.inference_mode():
        model.encode_image(torch.zeros(8, 3, *size, device=device))
        start = time.perf_counter()
        for i in range(0, len(paths), 8):
            batch = torch.stack([preprocess(Image.open(p)) for p in paths[i:i + 8]]).to(device)
            torch.nn.functional.normalize(model.encode_image(batch), dim=-1).cpu()
    seconds = time.perf_counter() - start
    return {"images": len(paths), "seconds": seconds, "img_s": len(paths) / seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--megapixels", type=int, choices=(2, 12), default=12)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--unique", type=int, default=200, help="distinct generated JPEGs (hard-linked to reach --count)")
    ap.add_argument("--count", type=int, default=1000, help="images for (a)")
    ap.add_argument("--count-b", type=int, default=0, help="images for (b); 0 skips it")
    ap.add_argument("--count-c", type=int, default=0, help="images for (c); 0 skips it")
    ap.add_argument("--workers", type=int, default=-1, help="(a) decode processes; -1: one per core")
    ap.add_argument("--gpu-decode", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--work", type=Path, default=Path("data/generated"), help="where photos and models go")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--runtimes", default="", help="instead of (a)/(b)/(c): (a) once per encoder runtime, e.g. "
                    "torch,openvino,openvino-int8,onnx,onnx-int8 (the first is the baseline)")
    a = ap.parse_args()

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    copies = max(1, -(-max(a.count, a.count_b, a.count_c) // a.unique))
    t0 = time.perf_counter()
    files = make_photos(a.work / f"photos-{a.megapixels}mp", a.unique, a.megapixels, copies)
    print(f"photos: {len(files)} paths ({a.unique} unique, {a.megapixels} MP, "
          f"{np.mean([f.stat().st_size for f in files[:a.unique]]) / 1e6:.2f} MB each) ready in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    model_dir = save_random_model(a.model, a.work / f"model-{a.model}")
    gpu = {"auto": None, "on": True, "off": False}[a.gpu_decode]
    machine = (f"{platform.node()}: {os.cpu_count()} cores, "
               + (torch.cuda.get_device_name() if device == "cuda" else "no GPU") + f", torch {torch.__version__}")
    print(f"machine: {machine}; model {a.model}; device {device}", flush=True)

    def subset(n: int) -> Path:
        folder = Path(tempfile.mkdtemp(prefix="bench-set-"))
        for i, f in enumerate(files[:n]):
            os.symlink(f.resolve(), folder / f"{i:06d}.jpg")
        return folder

    results: dict[str, dict] = {}
    folder = subset(a.count)
    if a.runtimes:
        for name in a.runtimes.split(","):
            runtime, _, precision = name.partition("-")
            results[name] = r = run_runtime(folder, model_dir, a.workers, runtime, precision or "fp32")
            base = results[a.runtimes.split(",")[0]]["img_s"]
            print(f"{name:14s} {r['img_s']:7.1f} img/s  {r['img_s'] / base:5.2f}x  ({r['images']} images, "
                  f"{r['seconds']:.1f} s; export {r['export_s']:.0f} s; on {r['encoder']}) {r['warnings'] or ''}",
                  flush=True)
        if a.json:
            a.json.write_text(json.dumps({"machine": machine, "model": a.model, "megapixels": a.megapixels,
                                          "date": time.strftime("%Y-%m-%d"), **results}, indent=2))
        return
    results["a"] = run_ours(folder, model_dir, a.workers, gpu)
    print(f"(a) imgsearch     {results['a']['img_s']:9.1f} img/s  ({results['a']['images']} images, "
          f"{results['a']['seconds']:.1f} s)\n{results['a']['breakdown']}", flush=True)
    if a.count_b:
        results["b"] = run_dataloader(files[:a.count_b], model_dir, device)
        print(f"(b) DataLoader    {results['b']['img_s']:9.1f} img/s  ({results['b']['images']} images)", flush=True)
    if a.count_c:
        results["c"] = run_naive(files[:a.count_c], model_dir, device)
        print(f"(c) naive loop    {results['c']['img_s']:9.1f} img/s  ({results['c']['images']} images)", flush=True)
    for base in ("b", "c"):
        if base in results:
            print(f"ratio a/{base}: {results['a']['img_s'] / results[base]['img_s']:.2f}x")
    if a.json:
        a.json.write_text(json.dumps({"machine": machine, "model": a.model, "megapixels": a.megapixels,
                                      "date": time.strftime("%Y-%m-%d"), **results}, indent=2))


if __name__ == "__main__":
    main()
