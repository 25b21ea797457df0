"""A corpus of hostile and odd files, indexed in one run: good files are indexed, bad ones skipped
with a specific reason and listed, and a later run retries a bad file only if it changed."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from imgsearch.config import IndexSettings, ModelSpec
from imgsearch.images.decode import Geometry, fit_to_geometry
from imgsearch.library import Library
from tests.factories import FakeEncoder

OK = "indexed"


def rgb(w: int = 64, h: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png() -> bytes:
    """A 200 byte PNG declaring 100000 x 100000 pixels."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + png_chunk(b"IEND", b"")


def with_exif(img: Image.Image, **tags) -> bytes:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[int(tag.lstrip("t"))] = value
    return encoded(img, "JPEG", exif=exif.tobytes())


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, format=fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)
    return out.getvalue()


def palette_with_transparency() -> bytes:
    img = Image.new("P", (32, 32), 0)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    return encoded(img, "PNG", transparency=0)


JPEG = encoded(rgb(), "JPEG")
PNG = encoded(rgb(), "PNG")

# name -> (bytes or a callable that makes the file at a path, expected: OK or a reason substring)
CASES: dict[str, tuple[bytes | Callable[[Path], None], str]] = {
    "truncated.jpg": (JPEG[: len(JPEG) // 2], "cannot decode"),
    "truncated.png": (PNG[: len(PNG) // 2], "cannot decode"),
    "zero.jpg": (b"", "empty file"),
    "text.jpg": (b"just some notes, not a picture\n" * 20, "not an image"),
    "error-page.png": (b"<!doctype html><html><body>404 Not Found</body></html>", "not an image"),
    "bomb.png": (bomb_png(), "too large: 100000x100000|decompression bomb"),
    "soi-only.jpg": (b"\xff\xd8", "not an image"),
    "bad-crc.png": (PNG[:33] + b"\x00\x00\x00\x00" + PNG[37:], "cannot decode"),
    "truncated.gif": (encoded(rgb(), "GIF")[:60], "cannot decode|not an image"),
    "bogus.tiff": (b"II*\x00" + b"\xff" * 40, "cannot decode|not an image"),
    "truncated.webp": (encoded(rgb(), "WEBP")[:40], "cannot decode|not an image"),
    "gif-header-only.gif": (b"GIF89a", "cannot decode|not an image"),
    "strip-1x100000.png": (encoded(rgb(1, 100_000), "PNG"), OK),
    "strip-100000x1.png": (encoded(rgb(100_000, 1), "PNG"), OK),
    "cmyk.jpg": (encoded(rgb().convert("CMYK"), "JPEG"), OK),
    "sixteen-bit.png": (encoded(Image.fromarray(np.full((20, 30), 40000, np.uint16)), "PNG"), OK),
    "palette-transparent.png": (palette_with_transparency(), OK),
    "animated.gif": (animated("GIF"), OK),
    "animated.webp": (animated("WEBP"), OK),
    "orientation-9.jpg": (with_exif(rgb(), t274=9), OK),
    "orientation-0.jpg": (with_exif(rgb(), t274=0), OK),
    "huge-exif.jpg": (with_exif(rgb(), t270="x" * 60_000), OK),
    "garbage-date.jpg": (with_exif(rgb(), t306="0000:00:00 00:00:00"), OK),
    "progressive.jpg": (encoded(rgb(), "JPEG", progressive=True), OK),
    "grey.jpg": (encoded(rgb().convert("L"), "JPEG"), OK),
    "alpha.png": (encoded(rgb().convert("RGBA"), "PNG"), OK),
    "grey-alpha.png": (encoded(rgb().convert("LA"), "PNG"), OK),
    "one-pixel.png": (encoded(rgb(1, 1), "PNG"), OK),
    "big-flat.png": (encoded(Image.new("RGB", (4000, 3000), (9, 99, 199)), "PNG"), OK),
    "jpeg-named.png": (JPEG, OK),
    "png-named.jpg": (PNG, OK),
    "plain.bmp": (encoded(rgb(), "BMP"), OK),
    "plain.tif": (encoded(rgb(), "TIFF"), OK),
    "lossless.webp": (encoded(rgb(), "WEBP", lossless=True), OK),
    "UPPER.JPEG": (encoded(rgb(seed=5), "JPEG"), OK),
    ("x" * 240) + ".jpg": (encoded(rgb(seed=6), "JPEG"), OK),
    "dangling.jpg": (lambda p: os.symlink(p.parent / "nowhere.jpg", p), "dangling symlink"),
    "loop-a.jpg": (lambda p: (os.symlink(p.parent / "loop-b.jpg", p), os.symlink(p, p.parent / "loop-b.jpg")), "symlink loop"),
    "fifo.jpg": (lambda p: os.mkfifo(p), "not a regular file"),
    "folder.jpg": (lambda p: (p.mkdir(), (p / "inside.png").write_bytes(PNG)), "folder"),
    "link-to-good.jpg": (lambda p: os.symlink(p.parent / "plain.bmp", p), OK),
}
NON_UTF8 = b"caf\xe9.jpg"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Library, object]:
    root = tmp_path_factory.mktemp("corpus") / "photos"
    root.mkdir()
    for name, (content, _) in CASES.items():
        if callable(content):
            content(root / name)
        else:
            (root / name).write_bytes(content)
    with open(os.fsencode(root) + b"/" + NON_UTF8, "wb") as f:
        f.write(JPEG)
    encoder = FakeEncoder("fake")
    lib = Library.open(root.parent / "lib", create=True, encoder_loader=lambda spec: encoder)
    report = lib.index([root], ModelSpec("fake", None), IndexSettings(workers=2))
    yield root, lib, report
    lib.close()


def test_run_completes_and_counts_add_up(corpus) -> None:
    root, lib, report = corpus
    bad = [n for n, (_, e) in CASES.items() if e not in (OK, "folder")]
    good = [n for n, (_, e) in CASES.items() if e == OK]
    assert report.skipped == len(bad) + 2  # + the non-UTF-8 name and loop-b.jpg, the loop's other link
    assert report.new == len(good) + 1  # + folder.jpg/inside.png
    assert lib.status().indexed == report.new
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_file(corpus, name: str) -> None:
    root, lib, _ = corpus
    expected = CASES[name][1]
    skipped = dict(lib.skipped())
    path = str(root / name)
    if expected == OK:
        assert path not in skipped
        hits = lib.search_text("anything", k=500)
        assert path in {h.path for h in hits}
    elif expected == "folder":
        assert path not in skipped and str(root / name / "inside.png") in {h.path for h in lib.search_text("x", k=500)}
    else:
        assert path in skipped, f"{name} not listed as skipped"
        import re

        assert re.search(expected, skipped[path]), (name, skipped[path])


def test_non_utf8_name_is_listed_with_its_reason(corpus) -> None:
    root, lib, _ = corpus
    skipped = dict(lib.skipped())
    assert skipped[str(root / "caf\\xe9.jpg")].startswith("file name is not valid UTF-8")


def test_rerun_retries_bad_files_only_when_they_change(corpus) -> None:
    root, lib, first = corpus
    again = lib.index([root], ModelSpec("fake", None), IndexSettings(workers=0))
    assert (again.encoded, again.skipped_now, again.skipped) == (0, [], first.skipped)
    (root / "text.jpg").write_bytes(JPEG)
    fixed = lib.index([root], ModelSpec("fake", None), IndexSettings(workers=0))
    assert fixed.encoded == 1 and fixed.skipped == first.skipped - 1 and str(root / "text.jpg") not in dict(lib.skipped())


def test_file_vanishing_between_crawl_and_read(library, tmp_path: Path, monkeypatch) -> None:
    from indexer import pipeline

    root = tmp_path / "pics"
    root.mkdir()
    for i in range(3):
        (root / f"{i}.jpg").write_bytes(encoded(rgb(seed=i), "JPEG"))
    real_plan = pipeline._plan

    def plan_then_delete(*args):
        result = real_plan(*args)
        (root / "1.jpg").unlink()  # gone after the crawl saw it
        return result

    monkeypatch.setattr(pipeline, "_plan", plan_then_delete)
    report = library.index([root], ModelSpec("fake", None), IndexSettings(workers=0))
    assert (report.new, report.skipped) == (2, 1)
    assert dict(report.skipped_now)[str(root / "1.jpg")].startswith("cannot read: No such file")
    monkeypatch.undo()
    again = library.index([root], ModelSpec("fake", None), IndexSettings(workers=0))
    assert again.removed == 1 and str(root / "1.jpg") not in dict(library.skipped())


def test_file_modified_while_being_read(tmp_path: Path, monkeypatch) -> None:
    from imgsearch.images import decode as images
    from imgsearch.errors import ImageError

    path = tmp_path / "a.jpg"
    path.write_bytes(JPEG)
    real_fstat = os.fstat
    calls = []

    def fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        calls.append(1)
        if len(calls) == 2:  # the stat after reading sees a newer mtime
            return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid,
                                   st.st_size, st.st_atime, st.st_mtime + 1, st.st_ctime))
        return st

    monkeypatch.setattr(images.os, "fstat", fstat)
    with pytest.raises(ImageError, match="changed while being read"):
        images.read_file(str(path))


def test_unreadable_file_is_skipped_with_the_os_reason(tmp_path: Path, monkeypatch) -> None:
    from imgsearch.images import decode as images
    from imgsearch.images.crawl import Skipped
    from imgsearch.images.loader import load

    path = tmp_path / "secret.jpg"
    path.write_bytes(JPEG)
    real_open = open

    def guarded(file, *args, **kwargs):  # root can read anything
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded)
    (result,) = load([str(path)], Geometry(16, 16), 10**9, workers=0)
    assert isinstance(result, Skipped) and result.reason == "cannot read: Permission denied"
    assert images  # the module whose open() was guarded


def test_panorama_crop_before_resize_matches_resize_then_crop() -> None:
    y, x = np.mgrid[0:2000, 0:30]  # a smooth, photo-like strip
    img = Image.fromarray(np.stack([128 + 100 * np.sin(y / 37.0), 128 + 60 * np.cos(x / 5.0 + y / 90.0),
                                    128 + 80 * np.sin((x + y) / 23.0)], axis=-1).astype(np.uint8))
    geo = Geometry(224, 224)
    fast = fit_to_geometry(img, geo)
    w, h = img.size
    full = img.resize((224, int(224 * h / w)), Image.Resampling.BICUBIC)
    top = int(round((full.height - 224) / 2.0))
    reference = np.asarray(full)[top:top + 224]
    assert np.abs(fast.astype(int) - reference.astype(int)).mean() < 2.0


def test_gpu_path_header_reader_rejects_bombs_with_a_reason() -> None:
    from imgsearch.errors import ImageError
    from imgsearch.images.decode import read_header

    for limit in (10_000, 10**12):  # ours, then Pillow's own check on the declared size
        with pytest.raises(ImageError, match="too large|decompression bomb"):
            read_header(bytearray(bomb_png()), limit if limit < 10**12 else 10**9)
