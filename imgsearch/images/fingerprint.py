"""A photo's fingerprint for duplicate finding, made where the photo is decoded (at index time, so `dups` reopens no
file): pHashes of the picture, of its 7 other flips/rotations and of 14 inner crops, then the picture itself, small,
for the pixel check. A video's fingerprint is its sampled key frames' fingerprints, one after the other.

pHash is imagehash's (a test holds the bits equal): the low-frequency block of a 2-D DCT-II of the grey image,
each term above the block's median. The DCT is two products with a 32x32 or 64x64 cosine matrix, so the default
install does without imagehash's SciPy and PyWavelets (~155 MB, a fifth of it).

Imported by decode worker processes: numpy and Pillow only."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

from imgsearch.config import VideoSampling
from imgsearch.errors import ImageError
from imgsearch.progress import Progress
from imgsearch.workers import default_workers, importable_main, process_pool

HASH_SIDE = 32  # the coarse pHash works on a 32x32 grey image, the fine one on 64x64


DRAFT_SIDE = 4 * HASH_SIDE  # a JPEG decoded for its fingerprint alone is DCT-downscaled to at least this


COARSE_BYTES = 8  # pHash of 8x8 DCT terms (64 bits): finds candidates, tolerates crops and edits


FINE_BYTES = 32  # pHash of 16x16 DCT terms (256 bits): "the same pixels" (re-encoded, resized, flipped...)


CODE_BYTES = COARSE_BYTES + FINE_BYTES


# The 8 flips/rotations of a picture; a pair's evidence names the one that matched.
TRANSFORMS = ("same orientation", "mirrored", "flipped", "rotated 180", "transposed", "rotated 90",
              "transverse", "rotated 270")


OPS = (None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_180,
       Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_90, Image.Transpose.TRANSVERSE, Image.Transpose.ROTATE_270)


# Inner crops hashed too (a trimmed copy): (share of each side, places as (x, y) in [0, 1] of the room left). 95%:
# the 4 corners and the centre; 90%: a 3x3 grid (corners, edge midpoints, centre), so a 90% crop taken anywhere is
# at most 2.5% of a side from one of them (with 5 places it could be 5% off, and 4 in 10 went unproposed).
CROP_PLACES: tuple[tuple[float, tuple[tuple[float, float], ...]], ...] = (
    (0.95, ((0, 0), (1, 0), (0, 1), (1, 1), (0.5, 0.5))),
    (0.9, ((0, 0), (1, 0), (0, 1), (1, 1), (0.5, 0.5), (0.5, 0), (0.5, 1), (0, 0.5), (1, 0.5))),
)


CROPS = sum(len(places) for _, places in CROP_PLACES)


ROWS = len(TRANSFORMS) + CROPS  # per image: 8 flips/rotations, then 14 inner crops; each coarse + fine


# The picture itself, for the pixel check (imgsearch.dups.hashing): a 64x64 grey picture (compared at 32x32; the
# finer one lines a trimmed copy's inner crop up with the other photo), and a 4x4 RGB one for colour. Stored after
# the hashes. The grey picture is Lanczos-resampled (anti-aliased): an area average let detail finer than its pixels
# (a striped T-shirt's stripes) fold into coarse false patterns that differ with the scale, so a photo and its trim
# disagreed (0.57-0.75, where copies score 0.94 and more).
GREY_SIDE, DETAIL_SIDE, COLOUR_SIDE = 64, 32, 4
PIXEL_BYTES = GREY_SIDE * GREY_SIDE + COLOUR_SIDE * COLOUR_SIDE * 3


# One picture's fingerprint ends with its version byte. Its length is its version too: a stored fingerprint of another
# length (written by an older imgsearch) is made again by the next `index` (or, failing that, `dups`). Version 1 (no
# version byte) resampled with area averages; version 2 with Lanczos.
VERSION = 2
BLOB_BYTES = ROWS * CODE_BYTES + PIXEL_BYTES + 1


@functools.lru_cache(maxsize=4)
def _dct_matrix(n: int) -> np.ndarray:
    """DCT-II as a matrix: row k holds cos(pi k (2i + 1) / 2n); the unnormalised transform (SciPy's fftpack.dct
    scales it by 2, which moves no term across the median)."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    return np.cos(np.pi * k * (2 * i + 1) / (2 * n))


def _phashes(pixels: np.ndarray, hash_size: int) -> np.ndarray:
    """imagehash.phash of (k, n, n) grey pictures at once (n = 4 x hash_size): (k, hash_size, hash_size) bools."""
    dct = _dct_matrix(pixels.shape[-1])
    # rounded: terms that are 0 in exact arithmetic (flat areas) are 0 here too, not float noise on either side of
    # the median (real photos' terms are hundreds apart: the bits are imagehash's, a test holds it)
    low = np.round((dct @ pixels.astype(np.float64) @ dct.T)[:, :hash_size, :hash_size], 3)
    return low > np.median(low.reshape(len(low), -1), axis=1)[:, None, None]


def phash(image: Image.Image, hash_size: int) -> np.ndarray:
    """imagehash.phash of a grey image already at 4 x hash_size pixels a side: hash_size x hash_size bools."""
    return _phashes(np.asarray(image)[None], hash_size)[0]


def turn(pictures: np.ndarray, transform: int) -> np.ndarray:
    """One of the 8 flips/rotations (TRANSFORMS' order, as Image.transpose does them) of (m, h, w[, 3]) pictures,
    or of one (h, w[, 3]) picture: the same pixels Image.transpose gives (a test holds it)."""
    if pictures.ndim == 2 or (pictures.ndim == 3 and pictures.shape[-1] == 3):
        return turn(pictures[None], transform)[0]
    if transform == 0:
        return pictures
    if transform == 1:
        return pictures[:, :, ::-1]
    if transform == 2:
        return pictures[:, ::-1]
    if transform == 3:
        return pictures[:, ::-1, ::-1]
    if transform == 4:
        return np.swapaxes(pictures, 1, 2)
    if transform == 5:
        return np.rot90(pictures, 1, axes=(1, 2))
    if transform == 6:
        return np.swapaxes(pictures[:, ::-1, ::-1], 1, 2)
    return np.rot90(pictures, -1, axes=(1, 2))


def fingerprint(img: Image.Image) -> bytes:
    """An upright RGB picture's fingerprint (BLOB_BYTES): 22 x 40 bytes of pHashes (8 flips/rotations, then 14 inner
    crops (CROP_PLACES); each a coarse 64-bit and a fine 256-bit code), then the
    picture for the pixel check (64x64 grey, 4x4 RGB), then VERSION."""
    colour = np.asarray(img.convert("RGB").resize((COLOUR_SIDE, COLOUR_SIDE), Image.Resampling.BOX))
    grey = img.convert("L")
    w, h = grey.size
    if min(w, h) > DRAFT_SIDE:
        # one canonical size first (shorter side DRAFT_SIDE): the same picture gives the same fingerprint whatever
        # size it was decoded at (a JPEG drafted for one model or another, a PNG at full size)
        scale = DRAFT_SIDE / min(w, h)
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
        # Lanczos, after an area average down to 3x the size (Pillow's reducing_gap: a fraction of Lanczos' cost
        # from a large picture, and no aliasing left): detail finer than the pixels fades instead of folding into
        # false patterns (the pixel check's picture is made from this one)
        grey = grey.resize((w, h), Image.Resampling.LANCZOS, reducing_gap=3.0)
    boxes = [(0, 0, w, h)] + [(x, y, x + cw, y + ch)
                              for share, places in CROP_PLACES
                              for cw, ch in ((int(w * share), int(h * share)),)
                              for x, y in ((int(px * (w - cw)), int(py * (h - ch))) for px, py in places)]
    # each part at 64x64 (Lanczos), and at 32x32 as the mean of its 2x2 blocks: one resize per part
    large = np.stack([np.asarray(grey.resize((2 * HASH_SIDE, 2 * HASH_SIDE), Image.Resampling.LANCZOS, box=b))
                      for b in boxes])
    small = large.reshape(len(large), HASH_SIDE, 2, HASH_SIDE, 2).astype(np.float64).mean(axis=(2, 4))
    # the whole picture in its 8 flips/rotations (of the resized pictures, as pixels), then the crops as they are
    small = np.concatenate([np.stack([turn(small[0], t) for t in range(len(OPS))]), small[1:]])
    large = np.concatenate([np.stack([turn(large[0], t) for t in range(len(OPS))]), large[1:]])
    coarse = np.packbits(_phashes(small, 8).reshape(ROWS, -1), axis=1)
    fine = np.packbits(_phashes(large, 16).reshape(ROWS, -1), axis=1)
    # the whole picture at 64x64 (GREY_SIDE = 2 x HASH_SIDE), as it is, is the pixel check's grey picture
    return assemble(np.concatenate([coarse, fine], axis=1), np.concatenate([large[0].ravel(), colour.ravel()]))


def assemble(codes: np.ndarray, pixels: np.ndarray) -> bytes:
    """One picture's fingerprint (BLOB_BYTES) from its (ROWS, CODE_BYTES) pHash codes and its PIXEL_BYTES pixel
    code (the 64x64 grey picture, then the 4x4 RGB one), both uint8."""
    return codes.astype(np.uint8).tobytes() + pixels.astype(np.uint8).tobytes() + bytes([VERSION])


def pictures_in(size: int | None) -> int:
    """How many pictures' fingerprints a stored blob of `size` bytes holds (a photo 1, a video one per key frame; 0:
    none, or one written by another version)."""
    if not size or size % BLOB_BYTES:
        return 0
    return size // BLOB_BYTES


def fingerprint_file(path: str, max_pixels: int, sampling: VideoSampling | None = None) -> bytes:
    """A file's fingerprint, decoding it again: a photo's (BLOB_BYTES), a video's key frames' (one after the
    other). Raises ImageError for a file that cannot be decoded."""
    from imgsearch.images import video
    from imgsearch.images.decode import format_of_file, open_rgb
    from imgsearch.images.formats import VIDEO_FORMAT

    if format_of_file(path) is VIDEO_FORMAT:
        return b"".join(blob for _, blob in video.read_frames(path, sampling or VideoSampling(), max_pixels,
                                                              fingerprint).frames)
    img, _ = open_rgb(path, max_pixels, draft_to=(DRAFT_SIDE, DRAFT_SIDE))
    return fingerprint(img)


GONE = "gone since it was indexed (moved or deleted): run `imgsearch index` to update the library"


def _job(path: str, max_pixels: int) -> tuple[bytes | None, str | None]:
    if not os.path.isfile(path):
        return None, GONE
    try:
        return fingerprint_file(path, max_pixels), None
    except ImageError as exc:
        return None, exc.message
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"


CHUNK = 16


def fingerprint_files(paths: Sequence[str], workers: int, progress: Progress) -> list[tuple[bytes | None, str | None]]:
    """Fingerprints of files, in order, each (blob, None) or (None, why not), on a forkserver pool (no torch in
    the workers); workers < 0: one per core."""
    from imgsearch.images.decode import default_pixel_limit

    workers = default_workers() if workers < 0 else workers
    limit = default_pixel_limit(max(1, workers))
    progress.stage("fingerprinting", len(paths))
    out = []
    with contextlib.ExitStack() as stack:
        if workers <= 1 or len(paths) < 4 * CHUNK:
            results: Iterable[tuple[bytes | None, str | None]] = map(_job, paths, itertools.repeat(limit))
        else:
            stack.enter_context(importable_main())
            pool = stack.enter_context(process_pool(workers))
            results = pool.map(_job, paths, itertools.repeat(limit), chunksize=CHUNK)
        for result in results:
            out.append(result)
            progress.advance()
    return out
