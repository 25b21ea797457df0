"""Gather the evidence `imgsearch dups` groups: hashes, exact copies and the cached candidate pairs.

Incremental: perceptual hashes are computed once per file content, and the candidate-pair cache is
extended only with the photos whose vectors changed since the last scan (each new photo is
searched against all). A full rescan happens on the first run, when asked (rescan), or when the
thresholds asked for are looser than what the cache kept.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from imgsearch import store
from imgsearch.config import DupOptions, DupThresholds
from imgsearch.dups.options import calibrate_similar, thresholds_for
from imgsearch.fs import is_inside
from imgsearch.dups import pair_cache
from imgsearch.dups.candidates import Pair, PairTable, hash_neighbours, score_pairs, vector_neighbours
from imgsearch.dups.grouping import Photo
from imgsearch.dups.hashing import fingerprint_arrays, full_hash
from imgsearch.dups.videos import video_pairs
from imgsearch.images.fingerprint import BLOB_BYTES, GONE, fingerprint_files, pictures_in
from imgsearch.store.orm import Model, utc_now
from imgsearch.progress import Progress, SilentProgress

FLOOR_MARGIN = 0.05  # the cache keeps pairs this far below the thresholds: small changes need no rescan


@dataclass
class Evidence:
    """Everything grouping needs, for the photos in scope."""

    pairs: PairTable  # candidates, exact copies and videos
    photos: dict[int, Photo]
    vectors: dict[int, np.ndarray]
    codes: dict[int, np.ndarray]  # id -> (ROWS, 40) pHash codes: 8 flips/rotations, 14 inner crops
    pictures: dict[int, np.ndarray]  # id -> its pixel code (64x64 grey, 4x4 colour), for the pixel check
    footage: dict[tuple[int, int], tuple[int, int]]  # videos (a, b), a < b -> key frames matched, of how many
    full_hashes: dict[int, str]
    thresholds: DupThresholds
    hashed: int = 0  # files fingerprinted in this run (indexed without one)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): no pHash this time
    rescanned: int = 0  # photos searched for candidates in this run
    full_scan: bool = False
    calibration: dict | None = None  # how the similar threshold was measured on this library (None: default)
    library_size: int = 0  # photos with vectors in the library


def _refresh_hashes(sessions: sessionmaker[Session], rows: list, videos: set[int], workers: int,
                    progress: Progress) -> tuple[dict[int, bytes], list[int], list[tuple[str, str]]]:
    """Stored fingerprints of every photo and video (made at index time), making the missing or outdated ones;
    (fingerprints, newly made ids, failures)."""
    with sessions() as session:
        known = store.image_hashes(session)
    have: dict[int, bytes] = {}
    for r in rows:
        stored = known.get(r.id)
        if stored is None or stored.content_hash != r.content_hash:
            continue
        blob = stored.phashes
        pictures = pictures_in(len(blob)) if blob is not None else 0
        if blob is not None and pictures and (r.id in videos or pictures == 1):
            have[r.id] = blob
    todo = [r for r in rows if r.id not in have]
    fresh: list[int] = []
    failed: list[tuple[str, str]] = []
    if todo:
        results = fingerprint_files([r.path for r in todo], workers, progress)
        save = []
        for r, (codes, reason) in zip(todo, results):
            if codes is None:
                failed.append((r.path, reason or "unreadable"))
                continue
            have[r.id] = codes
            fresh.append(r.id)
            save.append((r.id, r.content_hash, codes))
        with sessions.begin() as session:
            store.save_fingerprints(session, save)  # as index saves them: a full hash kept for the same content
    return have, fresh, failed


def _exact_pairs(sessions: sessionmaker[Session], rows_by_id: dict,
                 vectors: dict[int, np.ndarray]) -> tuple[list[Pair], dict[int, str]]:
    """Byte-identical files: same size and partial hash, confirmed by a full-content hash (cached per stat).

    Hard links to one file (same device and inode) are one file, not duplicates.
    """
    with sessions() as session:
        candidates = store.exact_candidates(session)
        known = store.full_hashes(session, [i for ids in candidates for i in ids])
    full: dict[int, str] = {}
    save = []
    pairs: list[Pair] = []
    for ids in candidates:
        by_hash: dict[str, dict[tuple[int, int], int]] = {}
        for i in ids:
            row = rows_by_id.get(i)
            if row is None:
                continue
            try:
                st = os.stat(row.path)
                stat_key = f"{st.st_size}:{st.st_mtime_ns}"
                cached = known.get(i)
                if cached is not None and cached.full_hash and cached.full_hash_stat == stat_key \
                        and cached.content_hash == row.content_hash:
                    digest = cached.full_hash
                else:
                    digest = full_hash(row.path)
                    save.append((i, row.content_hash, digest, stat_key,
                                 cached is not None and cached.content_hash == row.content_hash))
            except OSError:
                continue  # gone or unreadable since indexing: not evidence of anything
            full[i] = digest
            by_hash.setdefault(digest, {}).setdefault((st.st_dev, st.st_ino), i)
        for same in by_hash.values():
            distinct = sorted(same.values())
            pairs.extend(Pair(distinct[0], j, float(vectors[distinct[0]] @ vectors[j]), 0, 0, 0, 0, exact=True)
                         for j in distinct[1:] if distinct[0] in vectors and j in vectors)
    if save:
        with sessions.begin() as session:
            store.save_full_hashes(session, save)
    return pairs, full


def _photo(row) -> Photo:  # SQLAlchemy row
    return Photo(row.id, row.path, row.width or 0, row.height or 0, row.size, int(row.exif_fields),
                 row.shot_at, row.format, row.mtime_ns)


def _in_scope(path: str, folders: Sequence[str]) -> bool:
    return not folders or any(is_inside(path, f) for f in folders)


def _candidates(ids: np.ndarray, matrix: np.ndarray, code_matrix: np.ndarray, has_code: np.ndarray,
                rows_to_scan: np.ndarray, k: int, floor: dict, progress: Progress) -> PairTable:
    """Pairs of `rows_to_scan` with their k nearest by vector and by hash, scored exactly, kept per the floor."""
    coded = np.flatnonzero(has_code)
    queries = rows_to_scan[has_code[rows_to_scan]] if len(rows_to_scan) else rows_to_scan
    progress.stage("finding candidates", len(rows_to_scan) + len(queries), unit="photo")
    candidate_rows = vector_neighbours(matrix, rows_to_scan, k, progress.advance)
    if len(coded):
        local = np.full(len(ids), -1, dtype=np.int64)
        local[coded] = np.arange(len(coded))
        hits = hash_neighbours(code_matrix[coded], local[queries], k, floor["hamming"], progress.advance, crops=True)
        candidate_rows = np.concatenate([candidate_rows, coded[hits]])
    return score_pairs(ids, matrix, code_matrix, has_code, candidate_rows, floor["cosine"], floor["hamming"],
                       floor["hashed_cosine"], max_crop=floor["crop"])


def gather(sessions: sessionmaker[Session], model: Model, options: DupOptions, cache_dir: Path,
           progress: Progress | None = None) -> Evidence:
    """Hash what is new, refresh the pair cache (in `cache_dir`), and return the evidence for the photos in scope."""
    progress = progress or SilentProgress()
    with sessions.begin() as session:
        rows = store.indexed_photos(session)
        ids, matrix = store.load_vectors(session, model.id, model.dim)
        video_vectors = store.video_vectors(session, model.id, model.dim)
        calibration = calibrate_similar(matrix)
        thresholds = thresholds_for(session, model.id, options, calibration)
        generation = store.generation_of(session, model.id)
    cached = pair_cache.load(cache_dir, model.id)
    floor = cached.floor if cached is not None else {}
    has_vector = set(ids.tolist())
    videos = set(video_vectors)
    rows = [r for r in rows if r.id in has_vector or r.id in videos]
    rows_by_id = {r.id: r for r in rows}
    prints, fresh, failed = _refresh_hashes(sessions, rows, videos, options.workers, progress)
    codes_by_id = {i: blob for i, blob in prints.items() if i not in videos}

    # what the cache must hold: pairs close in embedding space, and hash-close pairs with a lower cosine
    need_cos = min(thresholds.edited_cosine, thresholds.similar_cosine)
    full_scan = (options.rescan or cached is None or floor.get("cosine", 2.0) > need_cos
                 or floor.get("hashed_cosine", 2.0) > thresholds.near_cosine
                 or floor.get("hamming", -1) < thresholds.near_hamming or floor.get("crop", -1) < thresholds.near_crop
                 or floor.get("k", 0) < options.neighbours)
    if full_scan or cached is None:  # (cached is None makes a full scan: said twice for the type checker)
        floor = {"cosine": round(need_cos - FLOOR_MARGIN, 4), "hamming": thresholds.near_hamming + 4,
                 "crop": thresholds.near_crop,
                 "hashed_cosine": round(thresholds.near_cosine - FLOOR_MARGIN, 4), "k": options.neighbours}
        rescan_ids = ids
    else:
        with sessions() as session:
            changed = store.vector_ids(session, model.id, since_generation=cached.generation)
        rescan_ids = np.union1d(changed, np.array(fresh, dtype=np.int64))
    position = {int(i): n for n, i in enumerate(ids.tolist())}
    rows_to_scan = np.array([position[int(i)] for i in rescan_ids if int(i) in position], dtype=np.int64)
    has_code = np.array([int(i) in codes_by_id for i in ids.tolist()], dtype=bool)
    blank = bytes(BLOB_BYTES)
    blobs = [codes_by_id.get(int(i), blank) for i in ids.tolist()]
    code_matrix, picture_matrix = fingerprint_arrays(blobs)  # one copy of the blobs, two views of it
    del blobs

    found = _candidates(ids, matrix, code_matrix, has_code, rows_to_scan, options.neighbours, floor, progress)
    kept = found if full_scan or cached is None else PairTable.concat(
        [pair_cache.without(cached.pairs, rescan_ids), found])
    kept = kept.take(np.isin(kept.a, ids) & np.isin(kept.b, ids))  # photos forgotten since are dropped
    pair_cache.save(cache_dir, model.id, generation, floor, kept)
    with sessions.begin() as session:
        store.dup_scan(session, model.id).scanned_at = utc_now()

    vectors = {int(i): matrix[n] for n, i in enumerate(ids.tolist())} | video_vectors
    exact, full = _exact_pairs(sessions, rows_by_id, vectors)
    folders = [os.path.abspath(f) for f in options.folders]
    scope = np.array(sorted(i for i, r in rows_by_id.items() if _in_scope(r.path, folders)), dtype=np.int64)
    in_scope = set(scope.tolist())
    few = [p for p in exact if p.a in in_scope and p.b in in_scope]
    same_bytes = {(p.a, p.b) for p in few}
    few += [p for p in video_pairs({i: prints[i] for i in videos & in_scope if i in prints}, video_vectors, thresholds)
            if (p.a, p.b) not in same_bytes]
    pairs = PairTable.concat([PairTable.of(few), kept.take(np.isin(kept.a, scope) & np.isin(kept.b, scope))])
    # the fingerprints were made at index time: a photo in a pair whose file is gone since is left out, and said
    involved = np.union1d(pairs.a, pairs.b)
    gone = np.array([i for i in involved.tolist() if not os.path.isfile(rows_by_id[i].path)], dtype=np.int64)
    failed += [(rows_by_id[i].path, GONE) for i in gone.tolist()]
    pairs = pairs.take(~(np.isin(pairs.a, gone) | np.isin(pairs.b, gone)))
    involved = np.union1d(pairs.a, pairs.b).tolist()
    return Evidence(
        pairs=pairs, photos={i: _photo(rows_by_id[i]) for i in involved},
        vectors={i: vectors[i] for i in involved},
        codes={i: code_matrix[position[i]] for i in involved if i in position and has_code[position[i]]},
        pictures={i: picture_matrix[position[i]] for i in involved if i in position and has_code[position[i]]},
        footage={(p.a, p.b): p.frames for p in few if p.frames is not None},
        full_hashes={i: h for i, h in full.items() if i in set(involved)}, thresholds=thresholds,
        hashed=len(fresh), unreadable=failed, rescanned=len(rows_to_scan), full_scan=full_scan,
        calibration=calibration, library_size=len(ids))
