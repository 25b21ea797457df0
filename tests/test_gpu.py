"""CUDA paths (fp16 encoder, nvJPEG decoding); run with `pytest -m gpu` on a machine with a GPU."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from imgsearch.config import IndexSettings, ModelSpec
from imgsearch.encoder import OpenClipEncoder
from imgsearch.images import decode_file, read_file
from indexer.tensor_decode import TensorDecoder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_cuda_encoder_is_fp16_and_agrees_with_cpu(trained_model_dir: Path, photos_dir: Path) -> None:
    spec = ModelSpec(f"local-dir:{trained_model_dir}", None)
    gpu, cpu = OpenClipEncoder.load(spec), OpenClipEncoder.load(spec, device="cpu")
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float16 and gpu.batch_size == 256
    pixels = np.stack([decode_file(str(p), gpu.info.geometry, 10**9).pixels for p in sorted(photos_dir.glob("*.jpg"))])
    assert (gpu.encode_pixels(pixels) * cpu.encode_pixels(pixels)).sum(axis=1).min() > 0.99
    texts = ["a photo of a red square", "a blue circle"]
    assert (gpu.encode_texts(texts) * cpu.encode_texts(texts)).sum(axis=1).min() > 0.99


def test_nvjpeg_decoding_matches_the_cpu_reference(photos_dir: Path, trained_model_dir: Path) -> None:
    enc = OpenClipEncoder.load(ModelSpec(f"local-dir:{trained_model_dir}", None))
    files = [read_file(str(p)) for p in sorted(photos_dir.glob("*.jpg"))]
    decoded, fallback = TensorDecoder(enc.info.geometry, "cuda", 10**9).decode(files)
    assert fallback == [] and all(d.pixels.is_cuda for d in decoded)
    fast = enc.encode_pixels(torch.stack([d.pixels for d in decoded]))
    ref = enc.encode_pixels(np.stack([decode_file(d.path, enc.info.geometry, 10**9).pixels for d in decoded]))
    assert (fast * ref).sum(axis=1).mean() >= 0.995


def test_index_on_cuda_decodes_jpegs_on_the_gpu(tmp_path: Path, photos_dir: Path, tiny_model_dir: Path) -> None:
    from imgsearch.library import Library

    shutil.copytree(photos_dir, tmp_path / "pics")
    with Library.open(tmp_path / "lib", create=True) as lib:
        report = lib.index([tmp_path / "pics"], ModelSpec(f"local-dir:{tiny_model_dir}", None), IndexSettings(workers=0))
        assert report.new == 6 and report.times.gpu_images == 6
        assert lib.search_image(photos_dir / "hat-2.jpg", k=3)[0].path != str(photos_dir / "hat-2.jpg")
