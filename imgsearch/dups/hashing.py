"""Comparing fingerprints (imgsearch.images.fingerprint): the bit distances between two images' pHash codes, the
pixel check that confirms a near-exact pair, and full-content hashes for exact copies."""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageFilter

from imgsearch.images.fingerprint import (BLOB_BYTES, CODE_BYTES, COLOUR_SIDE, DETAIL_SIDE, GREY_SIDE,
                                          OPS, PIXEL_BYTES, ROWS, TRANSFORMS, turn)

_INVERSE = (0, 1, 2, 3, 4, 7, 6, 5)  # the transform (of TRANSFORMS) that undoes each one


# Calibrated on copies (re-encoded, resized, flipped, rotated, trimmed, brightened) of real photos against distinct
# photos of the same kind, the hardest being garments of one colour photographed on the same background
# (bench/pixel_check.py, bench/dups_eval.py, bench/dups_models.py; tests/test_pixel_check.py holds both sides). On
# 400 copies and the 1,753 pairs of distinct photos among all 3,409 clothing photos whose hashes propose them:
SAME_DETAIL = 0.90  # the aligned pictures' high frequencies correlate at least this much (copies >= 0.99; distinct
# photos <= 0.77)...
# ...or, for a trimmed copy, the best-aligned inner crop of one (searched coarse to fine on the 64x64 picture) against
# the other: true copies trimmed to 90-95% score 0.949-0.99, different garments on one blanket at most 0.870
TRIMMED_DETAIL = 0.90
# A trimmed copy is only called one when detail covers the pictures: a plain shape or a logo on a blank background
# (detail along one outline) lines up with any zoom of another picture of that outline. This share of a 64x64
# picture's pixels must differ from its blur by more than 2 grey levels (plain shapes: at most 0.33; 99% of real
# photos: above 0.36, the least detailed trimmed copy 0.35); below it, pictures are compared whole only.
DETAIL_SPREAD = 0.34
# And every part agrees, not the pictures on the whole alone: no 8x8 tile of the aligned 32x32 detail pictures where
# both have detail (std >= 2 grey levels) may correlate below 0.75 while differing by 4.5 grey levels (rms) or more.
# Photos' copies have no such tile differing by 3 or more (the labelled set); video key frames re-encoded by another
# codec at 160x120, up to 4.0 (codec noise where there is little detail). A scene shot twice with its subject moved
# 2-5% or turned 3-5 degrees has tiles far below (median -0.45 to 0.54), though the whole may still correlate as
# copies do. A trimmed copy is lined up less exactly (a window resampled from the 64x64 picture): its tiles may go
# down to 0.5 (true trims: 0.63 and up). Made-up second shots of 400 scenes (bench/pixel_check.py): 303 of 1,600
# passed the check without the tiles, 79 with them (most of these differ where the picture has no detail).
SAME_TILES, TRIMMED_TILES, TILE_SIDE, TILE_DETAIL, TILE_CHANGE = 0.75, 0.5, 8, 2.0, 4.5
SAME_COLOUR = 32.0  # and their mean colours differ by at most this (0-255, per channel: an exposure edit passes)
FLAT_DETAIL = 2.5  # less detail than this (std of the high frequencies, 0-255): a picture the check cannot tell
BLUR_SIGMA = 1.5
WINDOW_SHARES = (0.97, 0.95, 0.925, 0.9)  # a trimmed copy's inner crops: first these sides, at 5x5 positions each...
WINDOW_POSITIONS = 5
REFINE_ROUNDS = 3  # ...then three times around the best one, at half the step each time (the last at 1.6% of the room)
REFINE_GAIN = 0.25  # refining raised a true trim's first score by at most 0.16 (400 copies): below the bar less this,
# a pair is not refined (97% of the distinct pairs the crop hashes propose)


def full_hash(path: str) -> str:
    """blake2b of every byte of a file (exact duplicates are confirmed with it, never with a partial hash)."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _blob_matrix(blobs: Sequence[bytes]) -> np.ndarray:
    """(n, BLOB_BYTES) uint8: one photo's fingerprint a row."""
    return np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), BLOB_BYTES)


def hash_array(blobs: Sequence[bytes]) -> np.ndarray:
    """(n, ROWS, 40) uint8: per image, per flip/rotation then per inner crop, the coarse then the fine code."""
    return fingerprint_arrays(blobs)[0]


def fingerprint_arrays(blobs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(hash_array, pixel_array) of the same blobs, both views of one matrix (each of its own would copy them all)."""
    matrix = _blob_matrix(blobs)
    hashed = ROWS * CODE_BYTES
    return (matrix[:, :hashed].reshape(len(blobs), ROWS, CODE_BYTES),
            matrix[:, hashed:hashed + PIXEL_BYTES])  # (the version byte after them is neither)


def pixel_array(blobs: Sequence[bytes]) -> np.ndarray:
    """(n, PIXEL_BYTES) uint8: each image's pictures for the pixel check (64x64 grey, then 4x4 RGB)."""
    return fingerprint_arrays(blobs)[1]


def _parts(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of (m, PIXEL_BYTES) pixel codes: the (m, 64, 64) grey pictures, the same at (m, 32, 32) as float32 (2x2
    means), and the (m, 4, 4, 3) colour pictures as float32."""
    fine = codes[:, :GREY_SIDE * GREY_SIDE].reshape(-1, GREY_SIDE, GREY_SIDE)
    step = GREY_SIDE // DETAIL_SIDE
    grey = fine.reshape(-1, DETAIL_SIDE, step, DETAIL_SIDE, step).astype(np.float32).mean(axis=(2, 4))
    colour = codes[:, GREY_SIDE * GREY_SIDE:].reshape(-1, COLOUR_SIDE, COLOUR_SIDE, 3).astype(np.float32)
    return fine, grey, colour


@functools.lru_cache(maxsize=1)
def _blur_matrix() -> np.ndarray:
    """(32, 32) float32: a Gaussian blur (BLUR_SIGMA, edges reflected) along one side of a 32x32 picture, as a
    matrix: B @ picture @ B.T blurs it."""
    radius = int(3 * BLUR_SIGMA + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-x * x / (2 * BLUR_SIGMA * BLUR_SIGMA))
    k /= k.sum()
    padded = np.pad(np.eye(DETAIL_SIDE), ((radius, radius), (0, 0)), mode="reflect")
    return sum(k[i] * padded[i:i + DETAIL_SIDE] for i in range(len(k))).astype(np.float32)


def _detail(grey: np.ndarray) -> np.ndarray:
    """(m, 32, 32) -> the high frequencies: each picture minus its Gaussian blur (edges reflected)."""
    blur = _blur_matrix()
    return grey - blur @ grey @ blur.T


def _correlation(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(correlation of each pair of (m, ...) pictures (detail pictures, or tiles of them), the lesser of their two
    standard deviations)."""
    flat = (len(a), int(np.prod(a.shape[1:])))  # (m may be 0)
    x, y = a.reshape(flat), b.reshape(flat)
    x, y = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
    sx, sy = np.sqrt((x * x).mean(axis=1)), np.sqrt((y * y).mean(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ncc = np.where((sx > 0) & (sy > 0), (x * y).mean(axis=1) / (sx * sy), 0.0)
    return ncc, np.minimum(sx, sy)


def _resampling(starts: np.ndarray, size: np.ndarray, side: int, n: int) -> np.ndarray:
    """(k, side, n) float32: rows that resample [start, start + size) of n pixels to `side` pixels, one set of rows
    per (start, size), as Pillow's BILINEAR resize of a box does (a triangle stretched to the scale: anti-aliased)."""
    scale = (size / side).astype(np.float32)[:, None, None]
    centre = starts.astype(np.float32)[:, None, None] + (np.arange(side, dtype=np.float32)[None, :, None] + 0.5) * scale
    pixels = np.arange(n, dtype=np.float32)[None, None, :] + 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(pixels - centre) / np.maximum(scale, 1.0))
    return weights / weights.sum(axis=2, keepdims=True)


def _tiles_agree(a: np.ndarray, b: np.ndarray, bar: float = SAME_TILES) -> np.ndarray:
    """Whether no TILE_SIDE tile of (m, 32, 32) aligned detail pictures a and b, where both have detail, correlates
    below `bar` while differing by TILE_CHANGE or more (m bools)."""
    n = DETAIL_SIDE // TILE_SIDE

    def tiles(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), n, TILE_SIDE, n, TILE_SIDE).transpose(0, 1, 3, 2, 4).reshape(
            len(x), n * n, TILE_SIDE * TILE_SIDE)

    ta, tb = tiles(a), tiles(b)
    change = np.sqrt(((ta - tb) ** 2).mean(axis=2))
    ncc, detail = (x.reshape(change.shape) for x in _correlation(ta.reshape(-1, TILE_SIDE * TILE_SIDE),
                                                                tb.reshape(-1, TILE_SIDE * TILE_SIDE)))  # per tile
    moved = (detail >= TILE_DETAIL) & (ncc < bar) & (change >= TILE_CHANGE)
    return ~moved.any(axis=1)


def _window_matrices(windows: np.ndarray, n: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """For inner crops of a square picture n pixels a side, each given as (share of each side, x, y), x and y in
    [0, 1] of the room left (0: left or top, 1: right or bottom): the (k, side, n) rows and columns that resample
    each to side x side (see _windows)."""
    size = n * windows[:, 0]
    return _resampling(windows[:, 2] * (n - size), size, side, n), _resampling(windows[:, 1] * (n - size), size, side, n)


def _windows(picture: np.ndarray, matrices: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Inner crops of a square (n, n) or (n, n, 3) picture, resampled by _window_matrices: (k, side, side[, 3])
    float32. Two matrix products per crop: the same windows of the 64x64 grey picture and of the 4x4 colour one."""
    rows, cols = matrices
    if picture.ndim == 2:
        return rows @ picture.astype(np.float32) @ cols.transpose(0, 2, 1)
    return np.einsum("kin,nmc,kjm->kijc", rows, picture.astype(np.float32), cols)


@functools.lru_cache(maxsize=1)
def _grid() -> tuple[list[tuple[float, float, float]], tuple[np.ndarray, np.ndarray]]:
    """_best_crop's first windows (WINDOW_SHARES at WINDOW_POSITIONS x WINDOW_POSITIONS places) and their
    matrices, the same for every pair."""
    places = np.linspace(0.0, 1.0, WINDOW_POSITIONS)
    grid = [(share, float(x), float(y)) for share in WINDOW_SHARES for y in places for x in places]
    return grid, _window_matrices(np.array(grid), GREY_SIDE, DETAIL_SIDE)


def _best_crop(fine: np.ndarray, other: np.ndarray, hopeless: float = -1.0) -> tuple[float, tuple[float, float, float]]:
    """The highest correlation between an inner crop of a 64x64 grey picture and another picture's 32x32 detail:
    WINDOW_SHARES at WINDOW_POSITIONS x WINDOW_POSITIONS places, then REFINE_ROUNDS finer searches around the best
    (a trimmed copy's crop lies anywhere, 90-100% of each side). The crop keeps the picture's proportions: letting
    width and height vary apart lined different T-shirts on one background up as well as copies (0.89).
    A first search whose best is below `hopeless` is not refined. (score, the crop: its share of the sides and its
    place)."""
    def scores(matrices: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        crops = _windows(fine, matrices)
        return _correlation(_detail(crops), np.broadcast_to(other, crops.shape))[0]

    grid, matrices = _grid()
    found = scores(matrices)
    best, score = grid[int(found.argmax())], float(found.max())
    if score < hopeless:
        return score, best
    steps = np.array([0.0125, 0.125, 0.125])
    low, high = np.array([min(WINDOW_SHARES), 0.0, 0.0]), np.ones(3)
    moves = np.array(list(itertools.product((-1, 0, 1), repeat=3)))
    for _ in range(REFINE_ROUNDS):
        around = [(float(a), float(b), float(c)) for a, b, c in np.clip(np.array(best) + moves * steps, low, high)]
        found = scores(_window_matrices(np.array(around), GREY_SIDE, DETAIL_SIDE))
        if found.max() > score:
            best, score = around[int(found.argmax())], float(found.max())
        steps = steps / 2
    return score, best


def _layout_agrees(colour: np.ndarray, window: tuple[float, float, float], them: np.ndarray) -> bool:
    """Whether a picture's colours (4x4x3) inside the crop lined up with the other picture are the other's, cell by
    cell (a mean shift allowed, as an exposure edit makes): the detail of a plain shape lines up with any other plain
    shape of its outline, whatever its colour."""
    inside = _windows(colour, _window_matrices(np.array([window]), COLOUR_SIDE, COLOUR_SIDE))[0]
    gap = np.abs(inside - inside.mean(axis=(0, 1)) - (them - them.mean(axis=(0, 1)))).max(axis=2)
    return float(np.median(gap)) <= SAME_COLOUR


def trimmed_bars(crop: np.ndarray, near_crop: int) -> np.ndarray:
    """How much an inner crop's high frequencies must correlate for pairs whose inner-crop hashes are `crop` bits
    apart (negative: no crop distance); inf where the hashes do not say trimmed at all."""
    return np.where((crop >= 0) & (crop <= near_crop), TRIMMED_DETAIL, np.inf)


def trimmed_bar(crop: int | None, near_crop: int) -> float:
    """trimmed_bars for one pair (None: no crop distance)."""
    return float(trimmed_bars(np.array([-1 if crop is None else crop]), near_crop)[0])


def _spread(fine: np.ndarray) -> float:
    """The share of a 64x64 grey picture's pixels that differ from its blur by more than 2 grey levels."""
    img = Image.fromarray(fine)
    return float((np.abs(np.asarray(img, np.float32)
                         - np.asarray(img.filter(ImageFilter.GaussianBlur(BLUR_SIGMA)), np.float32)) > 2).mean())


def _trimmed_match(fa: np.ndarray, fb: np.ndarray, ga: np.ndarray, gb: np.ndarray, ca: np.ndarray, cb: np.ndarray,
                   bar: float) -> bool:
    """An inner crop of either picture (fa, fb: its 64x64 grey) against the other as it is (ga, gb: 32x32 grey; ca,
    cb: 4x4 colour): a trimmed copy when both have detail all over, the detail lines up and the colours inside the
    crop are the other's."""
    if min(_spread(fa), _spread(fb)) < DETAIL_SPREAD:
        return False
    da, db = _detail(ga[None])[0], _detail(gb[None])[0]
    for fine, colour, other_detail, other_colour in ((fa, ca, db, cb), (fb, cb, da, ca)):
        score, window = _best_crop(fine, other_detail, hopeless=bar - REFINE_GAIN)
        if score < bar or not _layout_agrees(colour, window, other_colour):
            continue
        crop = _detail(_windows(fine, _window_matrices(np.array([window]), GREY_SIDE, DETAIL_SIDE)))
        if _tiles_agree(crop, other_detail[None], TRIMMED_TILES)[0]:
            return True
    return False


def same_pictures(a: np.ndarray, b: np.ndarray, transforms: np.ndarray, trimmed: np.ndarray) -> np.ndarray:
    """Whether each pair of pixel codes ((m, PIXEL_BYTES) each) is the same picture: `a` turned by its transform
    (the flip/rotation the hashes matched, taking a to b) against `b`; for pairs with a finite `trimmed` bar (see
    trimmed_bar), also an inner crop of either against the other as it is (as the crop hashes compare them). Both
    need detail (two featureless pictures cannot be told apart: never a copy), their high frequencies must
    correlate, on the whole and tile by tile, and their mean colours be close (a trimmed copy's also cell by cell
    inside the crop)."""
    fa, ga, ca = _parts(a)
    fb, gb, cb = _parts(b)
    as_is = ga.copy()
    for transform in range(1, len(OPS)):
        rows = np.flatnonzero(transforms == transform)
        if len(rows):
            ga[rows] = turn(ga[rows], transform)
    da, db = _detail(ga), _detail(gb)
    ncc, detail = _correlation(da, db)
    colour = np.abs(ca.mean(axis=(1, 2)) - cb.mean(axis=(1, 2))).max(axis=1) <= SAME_COLOUR
    textured = detail >= FLAT_DETAIL
    ok = textured & colour & (ncc >= SAME_DETAIL)
    ok[ok] = _tiles_agree(da[ok], db[ok])
    for r in np.flatnonzero(~ok & np.isfinite(trimmed) & textured & colour):
        ok[r] = _trimmed_match(fa[r], fb[r], as_is[r], gb[r], ca[r], cb[r], float(trimmed[r]))
    return ok


def same_picture(a: np.ndarray, b: np.ndarray, transform: int | None, trimmed: float = float("inf")) -> bool:
    """same_pictures for one pair of pixel codes."""
    return bool(same_pictures(a[None], b[None], np.array([transform or 0]), np.array([trimmed]))[0])


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_WORDS = CODE_BYTES // 8  # a code row as 64-bit words: [0] the coarse code, [1:] the fine one


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (NumPy 2's bitwise_count; a byte table before it)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return _POPCOUNT[words.view(np.uint8)].reshape(*words.shape, 8).sum(axis=-1)


def hash_distances(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For (m, ROWS, 40) codes a and b: the smallest coarse distance between a flip/rotation of a and b as
    it is (or the reverse, whichever is smaller: pHash is not exactly symmetric), its transform (taking
    a to b), the fine distance under that transform, and the smallest fine distance between an inner
    crop of one and the other as it is (a trimmed copy). On 64-bit words: 8 bytes at a time."""
    flips = len(TRANSFORMS)
    wa = np.ascontiguousarray(a).view(np.uint64).reshape(len(a), ROWS, _WORDS)
    wb = np.ascontiguousarray(b).view(np.uint64).reshape(len(b), ROWS, _WORDS)

    def one_way(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        coarse = _popcount(x[:, :flips, 0] ^ y[:, :1, 0]).astype(np.int32)
        t = coarse.argmin(axis=1)
        rows = np.arange(len(x))
        fine = _popcount(x[rows, t, 1:] ^ y[:, 0, 1:]).sum(axis=1, dtype=np.int32)
        return coarse[rows, t], t, fine

    def cropped(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return _popcount(x[:, flips:, 1:] ^ y[:, :1, 1:]).sum(axis=2, dtype=np.int32).min(axis=1)

    c1, t1, f1 = one_way(wa, wb)
    c2, t2, f2 = one_way(wb, wa)
    back = (c2 < c1) | ((c2 == c1) & (f2 < f1))
    crop = np.minimum(cropped(wa, wb), cropped(wb, wa))
    return np.where(back, c2, c1), np.where(back, np.take(_INVERSE, t2), t1), np.where(back, f2, f1), crop


def hamming(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int]:
    """(coarse distance, transform from a to b, fine distance, crop distance) for two images' codes."""
    coarse, t, fine, crop = hash_distances(a[None], b[None])
    return int(coarse[0]), int(t[0]), int(fine[0]), int(crop[0])
