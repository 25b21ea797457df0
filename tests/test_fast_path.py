"""The fast decode paths: tensor (nvJPEG-style) decoding checked on the CPU, the hybrid loader, fidelity."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from imgsearch.config import IndexSettings, ModelSpec
from imgsearch.models.encoder import OpenClipEncoder
from imgsearch.images.decode import Decoded, Geometry, decode_file, fit_to_geometry, open_rgb, read_file
from imgsearch.images.crawl import Skipped
from imgsearch.images.loader import StageTimes, load
from imgsearch.images.gpu import TensorDecoder, orient
from tests.factories import write_photo


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pillow_exif_transpose(tmp_path: Path, orientation: int) -> None:
    arr = np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[274] = orientation
    img = Image.fromarray(arr)
    img.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(img))
    ours = orient(torch.from_numpy(arr).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(ours, expected)


def test_tensor_decoder_matches_pillow_path_and_hands_back_what_it_cannot_do(tmp_path: Path, photos_dir: Path) -> None:
    geo = Geometry(64, 64)
    rotated = write_photo(tmp_path / "rot.jpg", "blue", size=(90, 40), fmt="JPEG", orientation=6)
    png = write_photo(tmp_path / "x.png", "red")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((photos_dir / "hat-2.jpg").read_bytes()[:3000])
    files = [read_file(str(p)) for p in [*sorted(photos_dir.glob("*.jpg")), rotated, png, broken]]
    decoded, fallback = TensorDecoder(geo, "cpu", 10**9).decode(files)
    assert sorted(fallback) == sorted([str(png), str(broken)])
    assert len(decoded) == 7
    for d in decoded:
        ref = decode_file(d.path, geo, 10**9)
        assert d.info == ref.info and d.content_hash == ref.content_hash and d.size == ref.size
        full = fit_to_geometry(open_rgb(d.path, 10**9)[0], geo)  # no draft: what open_clip's transform sees
        diff = np.abs(d.pixels.numpy().astype(int) - full.astype(int))
        drafted = fit_to_geometry(open_rgb(d.path, 10**9, draft_to=(geo.width, geo.height))[0], geo)
        draft = np.abs(drafted.astype(int) - full.astype(int))
        # box pre-reduction, like Pillow's draft mode to the model's size, costs about a grey level; draft ~2 here
        assert diff.mean() < 1.5 and diff.mean() <= draft.mean() + 0.1, (d.path, diff.mean(), draft.mean())


def test_hybrid_loader_returns_every_file_once(tmp_path: Path, photos_dir: Path) -> None:
    paths = [str(p) for p in sorted(photos_dir.glob("*.jpg"))]
    paths += [str(write_photo(tmp_path / f"{i}.png", "green", seed=i)) for i in range(5)]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really")
    paths.append(str(bad))
    decoder = TensorDecoder(Geometry(32, 32), "cpu", 10**9)
    for workers in (0, 2):  # 0: JPEGs only on the "GPU"; 2: CPU workers compete for them too
        times = StageTimes()
        items = list(load(paths, Geometry(32, 32), 10**9, workers=workers, tensor_decoder=decoder, times=times))
        assert sorted(i.path for i in items) == sorted(paths)
        skipped = [i for i in items if isinstance(i, Skipped)]
        assert [s.path for s in skipped] == [str(bad)]
        assert all(isinstance(i, Decoded) and i.pixels.shape == (32, 32, 3) for i in items if i not in skipped)
        assert times.gpu_images + times.cpu_images == 12  # the broken JPEG is handed back to the CPU once
        if workers == 0:
            assert (times.gpu_images, times.cpu_images) == (6, 6)


def test_tensor_path_embeddings_match_the_reference(trained_model_dir: Path, photos_dir: Path) -> None:
    enc = OpenClipEncoder.load(ModelSpec(f"local-dir:{trained_model_dir}", None), device="cpu")
    files = [read_file(str(p)) for p in sorted(photos_dir.glob("*.jpg"))]
    decoded, _ = TensorDecoder(enc.info.geometry, "cpu", 10**9).decode(files)
    fast = enc.encode_pixels(torch.stack([d.pixels for d in decoded]))
    ref = enc.encode_pixels(np.stack([decode_file(d.path, enc.info.geometry, 10**9).pixels for d in decoded]))
    assert (fast * ref).sum(axis=1).mean() >= 0.995


def test_index_with_tensor_decoding_gives_the_same_results(tmp_path: Path, photos_dir: Path, tiny_model_dir: Path) -> None:
    from imgsearch.library import Library

    shutil.copytree(photos_dir, tmp_path / "pics")
    spec = ModelSpec(f"local-dir:{tiny_model_dir}", None)
    rankings = []
    for n, gpu_decode in enumerate((False, True)):
        with Library.open(tmp_path / f"lib{n}", create=True) as lib:
            report = lib.index([tmp_path / "pics"], spec, IndexSettings(workers=0, gpu_decode=gpu_decode))
            assert report.new == 6 and report.times.gpu_images == (6 if gpu_decode else 0)
            rankings.append([h.path for h in lib.search_image(photos_dir / "hat-2.jpg", k=6)])
    assert rankings[0] == rankings[1]
