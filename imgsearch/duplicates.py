"""Duplicate photos in three tiers, with evidence: exact (same bytes), near-exact (same picture, other
encoding, size, light edit or orientation) and similar (burst shots, the same scene).

Pure: evidence and arrays in, groups out. Candidate pairs come from k-NN searches (never all
pairs); every threshold is applied to exact values (full-file hashes, pHash bit counts, cosines of
the stored vectors), never to approximate-search estimates. Groups are union-find closures capped
in size, and a similar-tier merge must keep every pair of the group close: a chain of
look-alikes cannot swallow unrelated photos. Nothing here touches a file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import faiss
import numpy as np
from PIL import Image

from imgsearch.config import DUP_TIERS, DupThresholds
from imgsearch.images import open_rgb

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
SIMILAR_LINK_SLACK = 0.05  # a merged similar group keeps every pair >= similar_cosine - this
BINARY_EXACT_MAX = 20_000  # hashes searched exhaustively up to here, with HNSW beyond
VECTOR_EXACT_MAX = 20_000  # vectors searched exhaustively up to here, with IVF (exact distances) beyond
TIER_RANK = {tier: n for n, tier in enumerate(DUP_TIERS)}


# --- per-file evidence ----------------------------------------------------------------------------

def perceptual_hashes(path: str, max_pixels: int) -> bytes:
    """pHashes (imagehash) of the oriented picture, of its 7 other flips/rotations and of 5 inner crops
    (95% of each side: 4 corners, centre), each a coarse 64-bit and a fine 256-bit code: 13 x 40 bytes.
    Raises ImageError for a file that cannot be decoded."""
    import imagehash  # here: it brings scipy, which nothing else needs

    img, _ = open_rgb(path, max_pixels, draft_to=(4 * HASH_SIDE, 4 * HASH_SIDE))
    grey = img.convert("L")
    small = grey.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS)
    large = grey.resize((2 * HASH_SIDE, 2 * HASH_SIDE), Image.Resampling.LANCZOS)
    codes = []
    for op in _OPS:
        coarse = imagehash.phash(small if op is None else small.transpose(op), hash_size=8).hash
        fine = imagehash.phash(large if op is None else large.transpose(op), hash_size=16).hash
        codes.append(np.concatenate([np.packbits(coarse.ravel()), np.packbits(fine.ravel())]))
    w, h = grey.size
    cw, ch = int(w * CROP_SHARE), int(h * CROP_SHARE)
    for x, y in ((0, 0), (w - cw, 0), (0, h - ch), (w - cw, h - ch), ((w - cw) // 2, (h - ch) // 2)):
        part = grey.crop((x, y, x + cw, y + ch))
        coarse = imagehash.phash(part.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS), hash_size=8).hash
        fine = imagehash.phash(part.resize((2 * HASH_SIDE, 2 * HASH_SIDE), Image.Resampling.LANCZOS), hash_size=16).hash
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


@dataclass(frozen=True)
class Pair:
    """Exact evidence that two images (a < b, image ids) may be copies."""

    a: int
    b: int
    cosine: float
    hamming: int | None = None  # coarse pHash distance (of 64 bits); None: no hash for one of them
    transform: int | None = None  # the flip/rotation taking a to b (index into TRANSFORMS)
    fine: int | None = None  # fine pHash distance (of 256 bits) under that transform
    crop: int | None = None  # fine distance between an inner crop of one and the other (a trimmed copy)
    exact: bool = False  # byte-identical


def _row_pairs(owners: np.ndarray, found: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """(m, 2) array of (owner row, found row) where keep, without self-pairs or misses."""
    keep = keep & (found >= 0) & (found != owners[:, None])
    return np.stack([np.broadcast_to(owners[:, None], found.shape)[keep], found[keep]], axis=1).astype(np.int64)


NO_PAIRS = np.zeros((0, 2), dtype=np.int64)


def vector_neighbours(vectors: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """(row, neighbour row) pairs, (m, 2), for the k nearest neighbours of `rows` among all vectors.

    Exhaustive for small sets, else an IVF index with flat (exact) storage and a generous nprobe: the
    search is approximate in which lists it visits, never in the distances it returns.
    """
    n, dim = vectors.shape
    if n < 2 or not len(rows):
        return NO_PAIRS
    k = min(k + 1, n)
    if n <= VECTOR_EXACT_MAX:
        index: faiss.Index = faiss.IndexFlatIP(dim)
        index.add(vectors)
    else:
        nlist = int(2 ** round(np.log2(4 * np.sqrt(n))))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, size=min(n, 64 * nlist), replace=False)
        index.train(vectors[np.sort(sample)])
        index.add(vectors)
        index.nprobe = max(8, nlist // 32)
    _, found = index.search(np.ascontiguousarray(vectors[rows]), k)
    return _row_pairs(np.asarray(rows, dtype=np.int64), found, np.ones(found.shape, dtype=bool))


def hash_neighbours(codes: np.ndarray, rows: np.ndarray, k: int, max_hamming: int) -> np.ndarray:
    """(row, neighbour row) pairs, (m, 2), within max_hamming of any flip/rotation of `rows` (FAISS binary index)."""
    n = len(codes)
    if n < 2 or not len(rows):
        return NO_PAIRS
    base = np.ascontiguousarray(codes[:, 0, :COARSE_BYTES])
    bits = COARSE_BYTES * 8
    index = faiss.IndexBinaryFlat(bits) if n <= BINARY_EXACT_MAX else faiss.IndexBinaryHNSW(bits, 32)
    if isinstance(index, faiss.IndexBinaryHNSW):
        index.hnsw.efConstruction = 64
        index.hnsw.efSearch = 128
    index.add(base)
    queries = np.ascontiguousarray(codes[rows][:, :len(TRANSFORMS), :COARSE_BYTES].reshape(-1, COARSE_BYTES))
    dist, found = index.search(queries, min(k + 1, n))
    return _row_pairs(np.repeat(np.asarray(rows, dtype=np.int64), len(_OPS)), found, dist <= max_hamming)


def score_pairs(ids: np.ndarray, vectors: np.ndarray, codes: np.ndarray | None, has_code: np.ndarray | None,
                row_pairs: np.ndarray, min_cosine: float = -1.0, max_hamming: int = -1,
                hashed_min_cosine: float = -1.0, chunk: int = 65_536) -> list[Pair]:
    """Exact evidence for candidate (row, row) pairs: the stored vectors' cosine and the pHash distances
    over the 8 flips/rotations. Kept: pairs at `min_cosine` or above, and pairs within `max_hamming`
    coarse bits at `hashed_min_cosine` or above. Vectorised, in chunks."""
    rows = np.asarray(row_pairs, dtype=np.int64).reshape(-1, 2).copy()
    if not len(rows):
        return []
    swap = ids[rows[:, 0]] > ids[rows[:, 1]]
    rows[swap] = rows[swap][:, ::-1]
    rows = np.unique(rows, axis=0)
    out: list[Pair] = []
    for lo in range(0, len(rows), chunk):
        r, s = rows[lo:lo + chunk, 0], rows[lo:lo + chunk, 1]
        cos = np.einsum("ij,ij->i", vectors[r], vectors[s])
        coarse = tr = fine = crop = None
        keep = cos >= min_cosine
        if codes is not None and has_code is not None and len(r):
            coarse, tr, fine, crop = hash_distances(codes[r], codes[s])
            coarse = np.where(has_code[r] & has_code[s], coarse, -1)
            keep |= (coarse >= 0) & (coarse <= max_hamming) & (cos >= hashed_min_cosine)
            coarse, tr, fine, crop = coarse[keep], tr[keep], fine[keep], crop[keep]
        r, s, cos = r[keep], s[keep], cos[keep]
        for n in range(len(r)):
            if coarse is None or coarse[n] < 0:
                out.append(Pair(int(ids[r[n]]), int(ids[s[n]]), float(cos[n])))
            else:
                out.append(Pair(int(ids[r[n]]), int(ids[s[n]]), float(cos[n]), int(coarse[n]), int(tr[n]),
                                int(fine[n]), int(crop[n])))
    return out


# --- tiers and groups -----------------------------------------------------------------------------

def pair_tier(pair: Pair, t: DupThresholds, dates: dict[int, datetime] | None = None,
              within_s: float | None = None) -> str | None:
    """The strongest tier a pair qualifies for, or None."""
    if pair.exact:
        return "exact"
    if pair.hamming is not None:
        same_pixels = pair.hamming <= t.near_hamming and pair.fine is not None and pair.fine <= t.near_fine
        trimmed = pair.crop is not None and pair.crop <= t.near_crop
        if (same_pixels or trimmed) and pair.cosine >= t.near_cosine:
            return "near"
        if pair.hamming <= t.near_hamming and pair.cosine >= t.edited_cosine:
            return "near"
    if pair.cosine >= t.similar_cosine:
        if within_s is None:
            return "similar"
        da, db = (dates or {}).get(pair.a), (dates or {}).get(pair.b)
        if da is not None and db is not None and abs((da - db).total_seconds()) <= within_s:
            return "similar"
    return None


@dataclass(frozen=True)
class Photo:
    """What the keeper choice and the output need to know about one image."""

    id: int
    path: str
    width: int
    height: int
    size: int
    exif_fields: int  # how many of date taken, camera make, model, GPS are known
    date: datetime  # date taken, else file time


def keeper_key(p: Photo) -> tuple:
    """Sort key, best first: highest resolution, largest file, richest EXIF, oldest, then path."""
    return (-(p.width * p.height), -p.size, -p.exif_fields, p.date, p.path)


@dataclass
class Member:
    photo: Photo
    relation: str  # keeper | exact | near | similar | linked (related to the keeper only through others)
    cosine: float | None = None  # to the keeper
    hamming: int | None = None  # coarse pHash distance to the keeper
    transform: str | None = None
    fine: int | None = None  # fine pHash distance to the keeper
    crop: int | None = None  # fine distance between an inner crop of one and the other


@dataclass
class Group:
    tier: str  # the weakest link that holds the group together
    keeper: Photo
    members: list[Member] = field(default_factory=list)  # keeper first

    @property
    def duplicates(self) -> list[Member]:
        return self.members[1:]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.items: dict[int, list[int]] = {}
        self.tier: dict[int, int] = {}

    def find(self, x: int) -> int:
        if x not in self.parent:
            self.parent[x], self.items[x], self.tier[x] = x, [x], 0
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, ra: int, rb: int, rank: int) -> None:
        if len(self.items[ra]) < len(self.items[rb]):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.items[ra].extend(self.items.pop(rb))
        self.tier[ra] = max(self.tier[ra], self.tier.pop(rb), rank)


@dataclass
class Grouping:
    groups: list[list[int]]  # image ids, each group's tier in `tiers`
    tiers: list[str]
    refused_by_cap: int = 0  # links not followed because the group would pass max_group
    refused_as_chain: int = 0  # similar links not followed because the group would hold dissimilar photos


def group_pairs(pairs: Sequence[Pair], t: DupThresholds, wanted: Sequence[str], vectors: dict[int, np.ndarray],
                max_group: int, dates: dict[int, datetime] | None = None,
                within_s: float | None = None) -> Grouping:
    """Union-find over qualifying pairs, strongest first, with the size cap and the similar-tier linkage."""
    weakest = max(TIER_RANK[w] for w in wanted)
    edges = []
    for p in pairs:
        tier = pair_tier(p, t, dates, within_s)
        if tier is not None and TIER_RANK[tier] <= weakest:
            edges.append((TIER_RANK[tier], -p.cosine, p.a, p.b))
    edges.sort()
    uf = _UnionFind()
    out = Grouping([], [])
    floor = t.similar_cosine - SIMILAR_LINK_SLACK
    for rank, _, a, b in edges:
        ra, rb = uf.find(a), uf.find(b)
        if ra == rb:
            continue
        if len(uf.items[ra]) + len(uf.items[rb]) > max_group:
            out.refused_by_cap += 1
            continue
        if rank == TIER_RANK["similar"] and _min_cosine(uf.items[ra], uf.items[rb], vectors) < floor:
            out.refused_as_chain += 1
            continue
        uf.union(ra, rb, rank)
    for root, items in uf.items.items():
        tier = DUP_TIERS[uf.tier[root]]
        if len(items) > 1 and tier in wanted:
            out.groups.append(sorted(items))
            out.tiers.append(tier)
    return out


def _min_cosine(a: list[int], b: list[int], vectors: dict[int, np.ndarray]) -> float:
    va = np.stack([vectors[i] for i in a])
    vb = np.stack([vectors[i] for i in b])
    return float((va @ vb.T).min())


def describe(ids: Sequence[int], tier: str, photos: dict[int, Photo], vectors: dict[int, np.ndarray],
             codes: dict[int, np.ndarray], full_hashes: dict[int, str], t: DupThresholds,
             keep: Sequence[str] = ()) -> Group:
    """A group with its keeper (a preferred path when one is in it) and each member's evidence against it."""
    members = sorted((photos[i] for i in ids), key=keeper_key)
    preferred = [p for p in members if p.path in set(keep)]
    keeper = preferred[0] if preferred else members[0]
    group = Group(tier, keeper, [Member(keeper, "keeper")])
    for p in members:
        if p.id == keeper.id:
            continue
        cos = float(vectors[p.id] @ vectors[keeper.id])
        ham = tr = fine = crop = None
        if p.id in codes and keeper.id in codes:
            ham, tr, fine, crop = hamming(codes[keeper.id], codes[p.id])
        exact = full_hashes.get(p.id) is not None and full_hashes.get(p.id) == full_hashes.get(keeper.id)
        relation = pair_tier(Pair(keeper.id, p.id, cos, ham, tr, fine, crop, exact), t) or "linked"
        group.members.append(Member(p, relation, cos, ham, TRANSFORMS[tr] if tr is not None else None, fine, crop))
    return group
