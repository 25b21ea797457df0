"""Fidelity of exported encoders on a trained model and real photos: each runtime and precision against the
PyTorch fp32 model it was exported from, in the same run. int8 calibrates on --calibration photos of the train
split; every figure is measured on the validation split (photos the export never saw).

Figures: mean and worst cosine between the two embeddings of each photo; top-10 image->image neighbour overlap;
for the prompt "a photo of a {label}" of every label, the top-10 text->image overlap and the precision@10 of each
(the share of its 10 first photos that carry the label).

    python bench/runtime_fidelity.py --model /tmp/clothing-default     # the model bench/train_clothing.py wrote
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "clothing"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="an open_clip local-dir model (trained)")
    ap.add_argument("--calibration", type=int, default=300)
    ap.add_argument("--runs", default="openvino-fp32,openvino-int8,onnx-fp32,onnx-int8")
    a = ap.parse_args()

    from imgsearch.config import ModelSpec
    from imgsearch.images.crawl import image_files
    from imgsearch.images.decode import decode_data, default_pixel_limit, read_file
    from imgsearch.models.encoder import OpenClipEncoder
    from imgsearch.models.export import export, measure, sample_photos

    enc = OpenClipEncoder.load(ModelSpec(f"local-dir:{a.model}", None), device="cpu")
    geo = enc.info.geometry
    files = image_files(DATA / "validation")
    labels = np.array([p.parent.name for p in files])
    pixels = np.stack([decode_data(read_file(str(p)), geo, default_pixel_limit(1)).pixels for p in files])
    calibration = sample_photos([DATA / "train"], geo, a.calibration)
    names = sorted(set(labels))
    prompts = [f"a photo of a {label}" for label in names]

    def embed(e) -> tuple[np.ndarray, np.ndarray]:
        images = np.concatenate([e.encode_pixels(pixels[i: i + 32]) for i in range(0, len(pixels), 32)])
        return images, e.encode_texts(prompts)

    def p_at_10(images: np.ndarray, texts: np.ndarray) -> tuple[float, np.ndarray]:
        top = np.argsort(-(texts @ images.T), axis=1)[:, :10]
        return float(np.mean([np.mean(labels[t] == name) for t, name in zip(top, names)])), top

    ref_images, ref_texts = embed(enc)
    ref_p, ref_top = p_at_10(ref_images, ref_texts)
    print(f"{platform.node()}: {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; model {a.model.name} "
          f"({geo.width}px, dim {enc.info.dim}); {len(files)} validation photos, {len(names)} labels, "
          f"{len(calibration)} calibration photos", flush=True)
    print(f"{'torch-fp32':14s} baseline: text->image P@10 {ref_p:.3f}", flush=True)
    with tempfile.TemporaryDirectory() as root:
        for run in a.runs.split(","):
            runtime, precision = run.split("-")
            t = time.perf_counter()
            made = export(enc, Path(root), runtime, precision, calibration)
            seconds = time.perf_counter() - t
            images, texts = embed(made.encoder)
            cosines = np.sum(ref_images * images, axis=1)
            _, overlap = measure(ref_images, images)
            p, top = p_at_10(images, texts)
            text_overlap = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(ref_top, top)])
            kept = made.encoder.export.precision
            print(f"{run:14s} kept {kept}; export {seconds:.0f} s; cosine mean {cosines.mean():.5f} min "
                  f"{cosines.min():.5f}; image top-10 overlap {overlap:.3f}; text->image top-10 overlap "
                  f"{text_overlap:.3f}; P@10 {p:.3f} (torch {ref_p:.3f}) {made.warnings or ''}", flush=True)


if __name__ == "__main__":
    main()
