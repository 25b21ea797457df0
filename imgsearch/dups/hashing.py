"""Per-file evidence: perceptual hashes (pHash over 8 flips/rotations and 5 inner crops) and full-content hashes,
and the bit distances between two images' codes.

pHash is imagehash's (a test holds the bits equal): the low-frequency block of a 2-D DCT-II of the grey image,
each term above the block's median. The DCT is two products with a 32x32 or 64x64 cosine matrix, so the default
install does without imagehash's SciPy and PyWavelets (~155 MB, a fifth of it)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from imgsearch.images.decode import open_rgb

HASH_SIDE = 32  # the coarse pHash works on a 32x32 grey image, the fine one on 64x64


COARSE_BYTES = 8  # pHash of 8x8 DCT terms (64 bits): finds candidates, tolerates crops and edits


FINE_BYTES = 32  # pHash of 16x16 DCT terms (256 bits): "the same pixels" (re-encoded, resized, flipped...)


CODE_BYTES = COARSE_BYTES + FINE_BYTES


# The 8 flips/rotations of a picture; a pair's evidence names the one that matched.
TRANSFORMS = ("same orientation", "mirrored", "flipped", "rotated 180", "transposed", "rotated 90",
              "transverse", "rotated 270")


_OPS = (None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_180,
        Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_90, Image.Transpose.TRANSVERSE, Image.Transpose.ROTATE_270)


_INVERSE = (0, 1, 2, 3, 4, 7, 6, 5)  # the transform that undoes each one


CROP_SHARE = 0.95  # inner crops (4 corners and the centre) hashed too, so a trimmed copy still matches


CROPS = 5


ROWS = len(TRANSFORMS) + CROPS  # per image: 8 flips/rotations, then 5 inner crops; each coarse + fine


@functools.lru_cache(maxsize=4)
def _dct_matrix(n: int) -> np.ndarray:
    """DCT-II as a matrix: row k holds cos(pi k (2i + 1) / 2n); the unnormalised transform (SciPy's fftpack.dct
    scales it by 2, which moves no term across the median)."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    return np.cos(np.pi * k * (2 * i + 1) / (2 * n))


def phash(image: Image.Image, hash_size: int) -> np.ndarray:
    """imagehash.phash of a grey image already at 4 x hash_size pixels a side: hash_size x hash_size bools."""
    pixels = np.asarray(image, dtype=np.float64)
    dct = _dct_matrix(pixels.shape[0])
    # rounded: terms that are 0 in exact arithmetic (flat areas) are 0 here too, not float noise on either side of
    # the median (real photos' terms are hundreds apart: the bits are imagehash's, a test holds it)
    low = np.round((dct @ pixels @ _dct_matrix(pixels.shape[1]).T)[:hash_size, :hash_size], 3)
    return low > np.median(low)


def perceptual_hashes(path: str, max_pixels: int) -> bytes:
    """pHashes of the oriented picture, of its 7 other flips/rotations and of 5 inner crops (95% of each side:
    4 corners, centre), each a coarse 64-bit and a fine 256-bit code: 13 x 40 bytes.
    Raises ImageError for a file that cannot be decoded."""
    img, _ = open_rgb(path, max_pixels, draft_to=(4 * HASH_SIDE, 4 * HASH_SIDE))
    grey = img.convert("L")
    small = grey.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS)
    large = grey.resize((2 * HASH_SIDE, 2 * HASH_SIDE), Image.Resampling.LANCZOS)
    codes = []
    for op in _OPS:
        coarse = phash(small if op is None else small.transpose(op), 8)
        fine = phash(large if op is None else large.transpose(op), 16)
        codes.append(np.concatenate([np.packbits(coarse.ravel()), np.packbits(fine.ravel())]))
    w, h = grey.size
    cw, ch = int(w * CROP_SHARE), int(h * CROP_SHARE)
    for x, y in ((0, 0), (w - cw, 0), (0, h - ch), (w - cw, h - ch), ((w - cw) // 2, (h - ch) // 2)):
        part = grey.crop((x, y, x + cw, y + ch))
        coarse = phash(part.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS), 8)
        fine = phash(part.resize((2 * HASH_SIDE, 2 * HASH_SIDE), Image.Resampling.LANCZOS), 16)
        codes.append(np.concatenate([np.packbits(coarse.ravel()), np.packbits(fine.ravel())]))
    return np.stack(codes).tobytes()


def full_hash(path: str) -> str:
    """blake2b of every byte of a file (exact duplicates are confirmed with it, never with a partial hash)."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def hash_array(blobs: Sequence[bytes]) -> np.ndarray:
    """(n, 13, 40) uint8: per image, per flip/rotation then per inner crop, the coarse then the fine code."""
    if not blobs:
        return np.zeros((0, ROWS, CODE_BYTES), dtype=np.uint8)
    return np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), ROWS, CODE_BYTES)


def valid_hashes(blob: bytes | None) -> bool:
    return blob is not None and len(blob) == ROWS * CODE_BYTES


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hash_distances(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For (m, 13, 40) codes a and b: the smallest coarse distance between a flip/rotation of a and b as
    it is (or the reverse, whichever is smaller: pHash is not exactly symmetric), its transform (taking
    a to b), the fine distance under that transform, and the smallest fine distance between an inner
    crop of one and the other as it is (a trimmed copy)."""
    flips = len(TRANSFORMS)

    def one_way(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        coarse = _POPCOUNT[np.bitwise_xor(x[:, :flips, :COARSE_BYTES], y[:, :1, :COARSE_BYTES])].sum(axis=2, dtype=np.int32)
        t = coarse.argmin(axis=1)
        rows = np.arange(len(x))
        fine = _POPCOUNT[np.bitwise_xor(x[rows, t, COARSE_BYTES:], y[:, 0, COARSE_BYTES:])].sum(axis=1, dtype=np.int32)
        return coarse[rows, t], t, fine

    def cropped(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return _POPCOUNT[np.bitwise_xor(x[:, flips:, COARSE_BYTES:], y[:, :1, COARSE_BYTES:])].sum(
            axis=2, dtype=np.int32).min(axis=1)

    c1, t1, f1 = one_way(a, b)
    c2, t2, f2 = one_way(b, a)
    back = (c2 < c1) | ((c2 == c1) & (f2 < f1))
    crop = np.minimum(cropped(a, b), cropped(b, a))
    return np.where(back, c2, c1), np.where(back, np.take(_INVERSE, t2), t1), np.where(back, f2, f1), crop


def hamming(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int]:
    """(coarse distance, transform from a to b, fine distance, crop distance) for two images' codes."""
    coarse, t, fine, crop = hash_distances(a[None], b[None])
    return int(coarse[0]), int(t[0]), int(fine[0]), int(crop[0])
