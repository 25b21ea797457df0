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


# The pixel check: the picture itself, small and in colour, so a near-exact pair is confirmed on pixels (aligned by
# the transform its hashes matched), never by the model's cosine alone. Stored after the hashes; a blob without it
# (written by an older version) is hashed again by the next `imgsearch dups`.
PIXEL_SIDE = 16
PIXEL_BYTES = PIXEL_SIDE * PIXEL_SIDE * 3
BLOB_BYTES = ROWS * CODE_BYTES + PIXEL_BYTES
# Calibrated on copies (re-encoded, resized, flipped, rotated, trimmed) of real photos against distinct photos of
# the same kind (bench/dups_eval.py; tests/test_duplicates.py holds both sides):
SAME_NCC = 0.90  # every detailed channel of the aligned pictures correlates at least this much
SAME_MEAN = 10.0  # and their mean colours differ by at most this (0-255, per channel);
EDITED_NCC, EDITED_MEAN = 0.97, 32.0  # or, for a picture with detail, an exposure or colour edit of it
FLAT_STD = 4.0  # a channel this even (std, 0-255) has no detail to correlate
WINDOW_SHARES = (0.95, 0.9)  # the inner crops a trimmed copy is compared with


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
    4 corners, centre), each a coarse 64-bit and a fine 256-bit code: 13 x 40 bytes; then the picture itself at
    16x16 in RGB (the pixel check's).
    Raises ImageError for a file that cannot be decoded."""
    img, _ = open_rgb(path, max_pixels, draft_to=(4 * HASH_SIDE, 4 * HASH_SIDE))
    pixels = np.asarray(img.convert("RGB").resize((PIXEL_SIDE, PIXEL_SIDE), Image.Resampling.BOX), dtype=np.uint8)
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
    return np.stack(codes).tobytes() + pixels.tobytes()


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
    whole = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), BLOB_BYTES)
    return whole[:, :ROWS * CODE_BYTES].reshape(len(blobs), ROWS, CODE_BYTES)


def pixel_array(blobs: Sequence[bytes]) -> np.ndarray:
    """(n, 16, 16, 3) uint8: each image's picture for the pixel check."""
    if not blobs:
        return np.zeros((0, PIXEL_SIDE, PIXEL_SIDE, 3), dtype=np.uint8)
    whole = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), BLOB_BYTES)
    return whole[:, ROWS * CODE_BYTES:].reshape(len(blobs), PIXEL_SIDE, PIXEL_SIDE, 3)


def valid_hashes(blob: bytes | None) -> bool:
    return blob is not None and len(blob) == BLOB_BYTES


def _likeness(a: np.ndarray, b: np.ndarray) -> tuple[float, float, bool]:
    """(the lowest correlation over the channels with detail, the largest difference of channel means, whether any
    channel has detail) of two 16x16 RGB pictures; a channel flat in both correlates as 1 (its mean decides)."""
    x, y = a.reshape(-1, 3).astype(np.float64), b.reshape(-1, 3).astype(np.float64)
    mean_gap = float(np.abs(x.mean(axis=0) - y.mean(axis=0)).max())
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    sx, sy = np.sqrt((x * x).mean(axis=0)), np.sqrt((y * y).mean(axis=0))
    ncc, detailed = 1.0, False
    for c in range(3):
        if sx[c] < FLAT_STD and sy[c] < FLAT_STD:
            continue
        if sx[c] < FLAT_STD or sy[c] < FLAT_STD:  # detail in one, none in the other: not the same picture
            return 0.0, mean_gap, True
        detailed = True
        ncc = min(ncc, float((x[:, c] * y[:, c]).mean() / (sx[c] * sy[c])))
    return ncc, mean_gap, detailed


def _same(likeness: tuple[float, float, bool]) -> bool:
    """Detail that correlates, and colours close enough. Two pictures without detail (solid colours, blank pages,
    black night shots) cannot be told apart at this size, nor by their hashes: they are never near-exact copies
    (byte-identical ones are still exact copies)."""
    ncc, gap, detailed = likeness
    return detailed and ((ncc >= SAME_NCC and gap <= SAME_MEAN) or (ncc >= EDITED_NCC and gap <= EDITED_MEAN))


def _windows(picture: np.ndarray) -> list[np.ndarray]:
    """The picture's inner crops (each share of WINDOW_SHARES of each side: 4 corners, centre), back at 16x16."""
    img = Image.fromarray(picture)
    out = []
    for share in WINDOW_SHARES:
        side = PIXEL_SIDE * share
        rest = PIXEL_SIDE - side
        out += [np.asarray(img.resize((PIXEL_SIDE, PIXEL_SIDE), Image.Resampling.BILINEAR,
                                      box=(x, y, x + side, y + side)))
                for x, y in ((0, 0), (rest, 0), (0, rest), (rest, rest), (rest / 2, rest / 2))]
    return out


def _turn(pictures: np.ndarray, transform: int) -> np.ndarray:
    """One of the 8 flips/rotations (TRANSFORMS' order, as Image.transpose does them) of (m, h, w, 3) pictures, or
    of one (h, w, 3) picture."""
    if pictures.ndim == 3:
        return _turn(pictures[None], transform)[0]
    if transform == 0:
        return pictures
    if transform == 1:
        return pictures[:, :, ::-1]
    if transform == 2:
        return pictures[:, ::-1]
    if transform == 3:
        return pictures[:, ::-1, ::-1]
    if transform == 4:
        return pictures.transpose(0, 2, 1, 3)
    if transform == 5:
        return np.rot90(pictures, 1, axes=(1, 2))
    if transform == 6:
        return pictures[:, ::-1, ::-1].transpose(0, 2, 1, 3)
    return np.rot90(pictures, -1, axes=(1, 2))


def same_pictures(a: np.ndarray, b: np.ndarray, transforms: np.ndarray, trimmed: np.ndarray) -> np.ndarray:
    """same_picture for many pairs at once: (m, 16, 16, 3) pictures, (m,) transforms and trimmed flags -> (m,)
    verdicts. Whole pictures are compared in one vectorised pass; only trimmed pairs that fail it try the crops."""
    turned = a.copy()
    for transform in range(1, len(_OPS)):
        rows = np.flatnonzero(transforms == transform)
        if len(rows):
            turned[rows] = _turn(a[rows], transform)
    x = turned.reshape(len(a), -1, 3).astype(np.float32)
    y = b.reshape(len(b), -1, 3).astype(np.float32)
    gap = np.abs(x.mean(axis=1) - y.mean(axis=1)).max(axis=1)
    x -= x.mean(axis=1, keepdims=True)
    y -= y.mean(axis=1, keepdims=True)
    sx, sy = np.sqrt((x * x).mean(axis=1)), np.sqrt((y * y).mean(axis=1))
    flat_x, flat_y = sx < FLAT_STD, sy < FLAT_STD
    with np.errstate(divide="ignore", invalid="ignore"):
        ncc = np.where(flat_x & flat_y, 1.0, (x * y).mean(axis=1) / (sx * sy))
    ncc = np.where(flat_x ^ flat_y, 0.0, ncc).min(axis=1)
    detailed = ~(flat_x & flat_y).all(axis=1)
    ok = detailed & (((ncc >= SAME_NCC) & (gap <= SAME_MEAN)) | ((ncc >= EDITED_NCC) & (gap <= EDITED_MEAN)))
    for r in np.flatnonzero(~ok & trimmed):
        ok[r] = same_picture(a[r], b[r], int(transforms[r]), True)
    return ok


def same_picture(a: np.ndarray, b: np.ndarray, transform: int | None, trimmed: bool = False) -> bool:
    """Whether two 16x16 pictures are the same picture: `a` turned by `transform` (the flip/rotation the hashes
    matched, taking a to b) against `b`; with `trimmed`, also an inner crop of either against the other as it is."""
    turned = _turn(a, transform or 0)
    candidates = [(turned, b)]
    if trimmed:
        candidates += [(w, b) for w in _windows(a)] + [(a, w) for w in _windows(b)]
    return any(_same(_likeness(x, y)) for x, y in candidates)


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
