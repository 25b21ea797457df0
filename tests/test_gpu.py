"""CUDA paths (fp16 encoder, nvJPEG decoding); run with `pytest -m gpu` on a machine with a GPU."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from imgsearch.config import IndexSettings, ModelSpec
from imgsearch.models.encoder import OpenClipEncoder
from imgsearch.images.decode import decode_file, read_file
from imgsearch.images.gpu import TensorDecoder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_cuda_encoder_is_fp16_and_agrees_with_cpu(trained_model_dir: Path, photos_dir: Path) -> None:
    spec = ModelSpec(f"local-dir:{trained_model_dir}", None)
    gpu, cpu = OpenClipEncoder.load(spec), OpenClipEncoder.load(spec, device="cpu")
    assert gpu.torch_device.type == "cuda" and gpu.dtype == torch.float16 and gpu.batch_size == 256
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


@pytest.mark.parametrize("compile_model", [False, True])
def test_training_on_cuda_with_bf16_autocast(tmp_path: Path, compile_model: bool) -> None:
    from imgsearch.models.train_data import read_pairs
    from imgsearch.models.training import TrainSettings, train
    from tests.test_training import class_folders

    data = class_folders(tmp_path / "data")
    settings = TrainSettings(epochs=6, batch_size=32, lr=2e-3, warmup_steps=5, val_fraction=0.25, workers=0,
                             compile=compile_model)  # as the CPU test in test_training
    reports = train(read_pairs(data), tmp_path / "m", settings, arch="tiny", device="cuda")
    assert all(np.isfinite(r.loss) for r in reports) and reports[-1].loss < reports[0].loss
    encoder = OpenClipEncoder.load(ModelSpec(f"local-dir:{tmp_path / 'm'}", None), device="cpu")  # saved as fp32
    assert encoder.encode_texts(["a photo of a red"]).shape == (1, 64)
