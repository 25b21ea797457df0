"""Videos as near-exact copies: a re-encoded, resized or trimmed video holds the other's key frames, in order.

Each video's fingerprint is its sampled key frames' fingerprints (imgsearch.images.fingerprint). Two videos are
compared frame by frame with the photos' rule (the hashes, then the pixel check), and are copies when most key
frames of the shorter one match key frames of the other in the same order: a trimmed copy holds a run of the
original's, a re-encode all of them. Candidates come from a binary k-NN search over every key frame (never all
pairs of videos). Pure: fingerprints in, pairs out."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from imgsearch.config import DupThresholds
from imgsearch.dups.candidates import Pair, hash_neighbours
from imgsearch.dups.hashing import hash_array, hash_distances, pixel_array, same_pictures
from imgsearch.images.fingerprint import BLOB_BYTES, pictures_in

SAME_SHARE = 0.8  # of the shorter video's key frames must each match one of the other's, in order
NEIGHBOURS = 8  # per key frame, in the candidate search


def _frames(blob: bytes) -> list[bytes]:
    return [blob[i:i + BLOB_BYTES] for i in range(0, len(blob), BLOB_BYTES)]


def _in_order(ok: np.ndarray) -> int:
    """The most matches (i, j) with i and j both strictly increasing (a longest common subsequence on a boolean
    match matrix)."""
    n, m = ok.shape
    best = np.zeros(m + 1, dtype=np.int32)
    for i in range(n):
        row = best.copy()
        for j in np.flatnonzero(ok[i]):
            row[j + 1] = max(row[j + 1], best[j] + 1)
        best = np.maximum.accumulate(row)
    return int(best[-1])


def matching_frames(a: bytes, b: bytes, t: DupThresholds) -> tuple[int, int]:
    """(how many of the shorter video's key frames match the other's, in order; how many it has). A pair of key
    frames matches as a pair of photos does: the same pixels by the hashes (any flip/rotation) and by the pixel
    check."""
    fa, fb = _frames(a), _frames(b)
    if len(fa) > len(fb):
        fa, fb = fb, fa
    ca, cb, pa, pb = hash_array(fa), hash_array(fb), pixel_array(fa), pixel_array(fb)
    n, m = len(fa), len(fb)
    left, right = np.repeat(np.arange(n), m), np.tile(np.arange(m), n)
    coarse, transform, fine, _ = hash_distances(ca[left], cb[right])
    close = np.flatnonzero((coarse <= t.near_hamming) & (fine <= t.near_fine))
    ok = np.zeros(n * m, dtype=bool)
    if len(close):
        ok[close] = same_pictures(pa[left[close]], pb[right[close]], transform[close],
                                  np.full(len(close), np.inf))
    return _in_order(ok.reshape(n, m)), n


def same_footage(matched: int, frames: int) -> bool:
    """Whether `matched` of the shorter video's `frames` key frames make it a copy of the other."""
    return frames > 0 and matched >= max(1, math.ceil(SAME_SHARE * frames))


def video_pairs(prints: Mapping[int, bytes], vectors: Mapping[int, np.ndarray], t: DupThresholds) -> list[Pair]:
    """Near-exact pairs among videos (id -> fingerprint of its key frames): candidates are videos with a key frame
    within the coarse threshold of one of the other's; each is then compared in full."""
    ids = sorted(i for i, blob in prints.items() if pictures_in(len(blob)))
    if len(ids) < 2:
        return []
    owner = np.concatenate([np.full(pictures_in(len(prints[i])), i, dtype=np.int64) for i in ids])
    codes = hash_array([f for i in ids for f in _frames(prints[i])])
    found = hash_neighbours(codes, np.arange(len(codes)), NEIGHBOURS, t.near_hamming)
    candidates = {(min(a, b), max(a, b)) for a, b in zip(owner[found[:, 0]].tolist(), owner[found[:, 1]].tolist())
                  if a != b}
    out = []
    for a, b in sorted(candidates):
        matched, frames = matching_frames(prints[a], prints[b], t)
        if same_footage(matched, frames):
            cosine = float(vectors[a] @ vectors[b]) if a in vectors and b in vectors else 0.0
            out.append(Pair(a, b, cosine, frames=(matched, frames)))
    return out
