"""Decoding: orientation, modes, metadata, limits, and geometry identical to open_clip's transform."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearch.errors import ImageError
from imgsearch.images.decode import Geometry, data_hash, decode_file, fit_to_geometry, open_rgb, partial_hash
from tests.factories import write_photo

BIG = 10**9


def test_exif_orientation_is_applied_and_recorded_sizes_are_oriented(tmp_path: Path) -> None:
    # 60x20 stored pixels, left third red; orientation 6 = rotate 90 CW for display
    arr = np.zeros((20, 60, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[274] = 6
    path = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(path, exif=exif.tobytes(), quality=95)
    img, info = open_rgb(path, BIG)
    assert img.size == (20, 60) and (info.width, info.height) == (20, 60)
    top, bottom = np.asarray(img)[:10].mean(axis=(0, 1)), np.asarray(img)[-10:].mean(axis=(0, 1))
    assert top[0] > 200 and bottom[0] < 50  # the red strip is now on top


def test_exif_date_camera_and_gps(tmp_path: Path) -> None:
    path = write_photo(tmp_path / "x.jpg", taken=datetime(2021, 7, 4, 18, 30, 5), make="Canon",
                       model="EOS R6", fmt="JPEG")
    img = Image.open(path)
    exif = img.getexif()
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (48.0, 51.0, 29.6), 3: "W", 4: (2.0, 17.0, 40.2)})
    img.save(path, exif=exif)
    _, info = open_rgb(path, BIG)
    assert info.taken_at == datetime(2021, 7, 4, 18, 30, 5)
    assert (info.camera_make, info.camera_model, info.format) == ("Canon", "EOS R6", "JPEG")
    assert info.gps_lat == pytest.approx(48.858222, abs=1e-5)
    assert info.gps_lon == pytest.approx(-2.294500, abs=1e-5)


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(path)
    img, _ = open_rgb(path, BIG)
    assert img.mode == "RGB" and np.asarray(img).min() == 255


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "g16.png"
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(path)
    img, _ = open_rgb(path, BIG)
    assert abs(int(np.asarray(img)[0, 0, 0]) - 128) <= 1


def test_pixel_limit_rejects_bombs_before_decoding(tmp_path: Path) -> None:
    path = write_photo(tmp_path / "big.png", size=(200, 100), fmt="PNG")
    with pytest.raises(ImageError, match="too large: 200x100"):
        open_rgb(path, max_pixels=10_000)


@pytest.mark.parametrize("payload,reason", [
    (b"", "empty file"),
    (b"hello, not an image", "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "cannot decode|not an image"),
])
def test_broken_files_raise_image_error_with_reason(tmp_path: Path, payload: bytes, reason: str) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(payload)
    with pytest.raises(ImageError, match=reason):
        decode_file(str(path), Geometry(16, 16), BIG)


def test_truncated_jpeg_is_an_image_error(tmp_path: Path, photos_dir: Path) -> None:
    data = (photos_dir / "dress-0.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="cannot decode"):
        decode_file(str(path), Geometry(16, 16), BIG)


def test_partial_hash_matches_in_memory_hash_and_sees_content(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 2000)  # > 2 chunks
    small = tmp_path / "small.bin"
    small.write_bytes(b"abc")
    for p in (big, small):
        assert partial_hash(p) == data_hash(p.read_bytes())
    changed = bytearray(big.read_bytes())
    changed[-1] ^= 1
    assert data_hash(bytes(changed)) != partial_hash(big)


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (224, 224), (101, 517)])
@pytest.mark.parametrize("mode", ["shortest", "squash", "longest"])
def test_fit_to_geometry_is_pixel_identical_to_open_clip(size: tuple[int, int], mode: str) -> None:
    import torch
    from open_clip.transform import image_transform

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    reference = image_transform(64, is_train=False, mean=(0, 0, 0), std=(1, 1, 1), resize_mode=mode)
    expected = (reference(img) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    ours = fit_to_geometry(img, Geometry(64, 64, resize_mode=mode))
    assert ours.shape == (64, 64, 3)
    np.testing.assert_array_equal(ours, expected)


def test_junk_under_an_image_name_is_refused_from_its_first_bytes(tmp_path: Path) -> None:
    """A 40 MB junk file named .jpg used to be read whole (twice its size in memory with the hash) before
    Pillow refused it; its first 64 bytes now say it is no image."""
    from imgsearch.errors import ImageError
    from imgsearch.images.decode import read_file

    junk = tmp_path / "DSC_0001.jpg"
    with open(junk, "wb") as f:
        f.write(b"<html>" + bytes(40 << 20))
    with pytest.raises(ImageError, match="the name says JPEG, but the first bytes are no image format's"):
        read_file(str(junk))
    clip = tmp_path / "00001.mts"  # formats without a signature of their own are still read (and tried)
    clip.write_bytes(b"\x47" + bytes(1000))
    assert len(read_file(str(clip)).data) == 1001
