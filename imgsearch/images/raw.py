"""Camera RAW files through LibRaw (rawpy): the embedded preview when it is large enough, else a full
demosaic at half size. Most cameras embed a full-size JPEG, which decodes many times faster than
demosaicing the sensor data (BENCHMARKS.md).

LibRaw is not fork-safe: decode RAWs only in this process or in forkserver/spawn workers (the
loader's pool), never in a process forked after rawpy ran.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image

from imgsearch.errors import ImageError
from imgsearch.images import formats
from imgsearch.images.exif import DECODE_ERRORS, ImageInfo, exif_metadata

# LibRaw's `flip` (how to turn the stored pixels upright) as Pillow transpositions. postprocess() applies
# it itself; embedded previews are stored as the sensor saw them, so they need it applied here.
_FLIP = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}
MAX_HEADER = 512 << 10  # IFD0 and the EXIF and GPS directories sit near the start; no need to copy all of it


# LibRaw's default data-error callback prints these on the process's stderr ("unknown file: ..." for a file read
# from memory); rawpy offers no hook for them.
_LIBRAW_LINE = re.compile(r"^(.*): (Unexpected end of file|data corrupted at -?\d+)$")
_STDERR = threading.Lock()  # fd 2 is the process's: one capture at a time
log = logging.getLogger(__name__)


@contextmanager
def _libraw_lines(said: list[str]) -> Iterator[None]:
    """Capture file descriptor 2 while LibRaw runs: its data-error lines go into `said` (the caller words a skip
    reason, or logs them when the file decoded anyway) instead of reaching the terminal unattributed; anything else
    written meanwhile is passed on to stderr."""
    with _STDERR:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                text = sink.read().decode("utf-8", "replace")
    others = []
    for line in text.splitlines():
        found = _LIBRAW_LINE.match(line)
        if found:
            said.append(found.group(2))
        else:
            others.append(line)
    if others:
        os.write(2, ("\n".join(others) + "\n").encode())


def open_raw(data: bytes | bytearray, max_pixels: int, min_side: int) -> tuple[Image.Image, ImageInfo]:
    """An upright RGB image of a RAW file with its shorter side at least `min_side` when the file allows,
    and its metadata (full-resolution size, date, camera, GPS where the RAW's TIFF header has them)."""
    said: list[str] = []
    with _libraw_lines(said):
        img, info = _open_raw(data, max_pixels, min_side)
    if said:  # decoded all the same (LibRaw fills what it could not read)
        log.info("LibRaw: %s", "; ".join(dict.fromkeys(said)))
    return img, info


def _open_raw(data: bytes | bytearray, max_pixels: int, min_side: int) -> tuple[Image.Image, ImageInfo]:
    import rawpy

    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            sizes = raw.sizes
            if sizes.width * sizes.height > max_pixels:
                raise ImageError(f"image too large: {sizes.width}x{sizes.height} pixels exceeds the limit of "
                                 f"{max_pixels:,}")
            upright = (sizes.height, sizes.width) if sizes.flip in (5, 6) else (sizes.width, sizes.height)
            img = _preview(raw, min_side, max_pixels)
            if img is None:
                try:
                    sound, damage = _has_sensor_data(raw), None
                except rawpy.LibRawError as exc:
                    sound, damage = False, exc
                if sound:
                    return Image.fromarray(raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)), \
                        _metadata(data, *upright)
                # a stripped file (only its header, as camera test suites publish them) or a damaged one has no sensor
                # data to develop: its embedded preview, however small, is the picture; without one there is none
                img = _preview(raw, 0, max_pixels)
                if img is None:
                    raise damage or ImageError(STRIPPED)  # damaged: its reason in words below
            img = img.transpose(_FLIP[sizes.flip]) if sizes.flip in _FLIP else img
    except ImageError:
        raise
    except rawpy.LibRawError as exc:
        raise ImageError(f"cannot decode RAW: {_in_words(exc)}") from exc
    except DECODE_ERRORS as exc:
        raise ImageError(f"cannot decode RAW: {type(exc).__name__}: {exc}") from exc
    return img, _metadata(data, *upright)


STRIPPED = ("holds no sensor data and no preview (a stripped RAW, only its header: test suites publish such "
            "files): there is no picture to index")


NOISE_CORRELATION = 0.2  # photosites of one colour two apart correlate at least this much in a picture


def _has_sensor_data(raw) -> bool:  # rawpy.RawPy
    """Whether the sensor data holds a picture: a stripped file's is all one value (developed: black), or the file's
    other bytes read as photosites (developed: noise). In any picture, photosites of one colour two apart saw nearly
    the same light (correlation ~0.9 and more); in noise they are unrelated (~0)."""
    visible = raw.raw_image_visible  # LibRawError: damaged, for the caller
    sample = visible[::7, ::7]  # every 49th photosite
    if sample.size == 0 or int(sample.max()) == int(sample.min()):
        return False
    rows = visible[::8]  # every 8th row (an even one: one colour every other photosite along it)
    here, there = rows[:, :-2:2].astype(np.float64).ravel(), rows[:, 2::2].astype(np.float64).ravel()
    if len(here) < 100 or here.std() == 0 or there.std() == 0:
        return True  # too few photosites to tell
    return float(np.corrcoef(here, there)[0, 1]) >= NOISE_CORRELATION


# What LibRaw's errors mean for a photo, in words (its own text is a C message such as b'Input/output error').
_LIBRAW_WORDS = {
    "LibRawIOError": "the file ends early or is damaged (it is shorter than its own header says)",
    "LibRawFileUnsupportedError": "not a RAW file LibRaw reads (an unsupported camera, or not a RAW at all)",
    "LibRawDataError": "its image data is damaged",
    "LibRawTooBigError": "its image is too large to decode",
    "LibRawUnsufficientMemoryError": "not enough memory to decode it",
    "LibRawRequestForNonexistentImageError": "it holds no image",
}


def _in_words(exc: Exception) -> str:
    name = type(exc).__name__
    detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
    return _LIBRAW_WORDS.get(name, f"LibRaw could not read it ({detail.rstrip('.').lower()})")


def _preview(raw, min_side: int, max_pixels: int) -> Image.Image | None:  # rawpy.RawPy
    """The embedded thumbnail (JPEG or bitmap), if its shorter side reaches min_side."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError, rawpy.LibRawError):
        return None
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            formats.own_pixel_limit()
            opened = Image.open(io.BytesIO(thumb.data))
            if opened.width * opened.height > max_pixels:
                return None
            if min_side:
                opened.draft("RGB", (min_side, min_side))
            img = opened.convert("RGB")
        else:
            img = Image.fromarray(np.ascontiguousarray(thumb.data[..., :3]).astype(np.uint8), "RGB")
    except DECODE_ERRORS:
        return None  # a broken preview: demosaic instead
    return img if min(img.size) >= min_side else None


def _metadata(data: bytes | bytearray, width: int, height: int) -> ImageInfo:
    """Date, camera and GPS from the TIFF header most RAW formats are built on (DNG, NEF, CR2, ARW...)."""
    exif = Image.Exif()
    try:
        exif.load(bytes(data[:MAX_HEADER]))  # IFD0 (make, model, date) and its EXIF and GPS sub-IFDs
    except (*DECODE_ERRORS, Image.UnidentifiedImageError):
        return ImageInfo(width, height, "RAW")
    info = exif_metadata(exif, width, height, "RAW")
    return ImageInfo(width, height, "RAW", info.taken_at, info.camera_make, info.camera_model, info.gps_lat,
                     info.gps_lon)
