"""Duplicate detection quality and speed on a labelled set made from real photos (../shared/data/clothing).

Every original gets copies made by one transform each (see TRANSFORMS): exact copies, JPEG
re-encodes at quality 50-95, resizes, 5% and 10% crops (at a random place), brightness and contrast shifts, PNG and WebP
conversions, EXIF-only rotations, and flips / 90-degree rotations (their own tag). The other
originals are the negatives, including hard ones (other photos of the same garment type). The
set is indexed with a model and `Library.duplicates` runs per tier; every pair inside a
reported group is a predicted pair.

Prints pair precision / recall / F1 per tier and recall per transform, false pairs per 10k pairs
among the untouched originals (all and same-class), and the grouping time at 10k and 100k
photos (vectors and hashes resampled from the real ones with noise; files are not re-read).

    python bench/dups_eval.py --originals 400 [--model local-dir:DIR]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLOTHING = Path(__file__).resolve().parents[2] / "shared" / "data" / "clothing"


def _exif_rotated(img: Image.Image, path: Path) -> None:
    exif = Image.Exif()
    exif[274] = 6  # the pixels stay as they are; viewers (and imgsearch) rotate them 90 degrees
    img.rotate(90, expand=True).save(path, quality=92, exif=exif.tobytes())


def _crop(img: Image.Image, rng: random.Random, share: float = 0.05) -> Image.Image:
    w, h = img.size
    dx, dy = int(w * share), int(h * share)
    x, y = rng.randint(0, dx), rng.randint(0, dy)
    return img.crop((x, y, x + w - dx, y + h - dy))


# tag -> (expected tier, maker(img, path, rng)); makers write the file (suffix decides the format)
TRANSFORMS = {
    "exact copy": ("exact", None),
    "jpeg q50-95": ("near", lambda img, p, r: img.save(p.with_suffix(".jpg"), quality=r.randint(50, 95))),
    "resize 30-80%": ("near", lambda img, p, r: img.resize(
        (int(img.width * (s := r.uniform(0.3, 0.8))), int(img.height * s)), Image.Resampling.LANCZOS)
        .save(p.with_suffix(".jpg"), quality=90)),
    "crop 5%": ("near", lambda img, p, r: _crop(img, r).save(p.with_suffix(".jpg"), quality=92)),
    "crop 10%": ("near", lambda img, p, r: _crop(img, r, 0.10).save(p.with_suffix(".jpg"), quality=92)),
    "brightness +-15%": ("near", lambda img, p, r: ImageEnhance.Brightness(img).enhance(r.choice([0.85, 1.15]))
                         .save(p.with_suffix(".jpg"), quality=92)),
    "contrast +-15%": ("near", lambda img, p, r: ImageEnhance.Contrast(img).enhance(r.choice([0.85, 1.15]))
                       .save(p.with_suffix(".jpg"), quality=92)),
    "png": ("near", lambda img, p, r: img.save(p.with_suffix(".png"))),
    "webp": ("near", lambda img, p, r: img.save(p.with_suffix(".webp"), quality=85)),
    "exif rotation": ("near", lambda img, p, r: _exif_rotated(img, p.with_suffix(".jpg"))),
    "flip/rot90": ("near", lambda img, p, r: r.choice([ImageOps.mirror, ImageOps.flip,
                                                       lambda i: i.rotate(90, expand=True)])(img)
                   .save(p.with_suffix(".jpg"), quality=92)),
}


def make_set(dest: Path, originals: int, seed: int) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Copy originals and write variants; returns (path -> original path, path -> transform, path -> class)."""
    rows = list(csv.DictReader(open(CLOTHING / "labels.csv")))
    rng = random.Random(seed)
    rng.shuffle(rows)
    rows = rows[:originals]
    origin, tag, label = {}, {}, {}
    for n, row in enumerate(rows):
        src = CLOTHING / row["path"]
        orig = dest / "originals" / row["label"] / src.name
        orig.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, orig)
        origin[str(orig)], tag[str(orig)], label[str(orig)] = str(orig), "original", row["label"]
        name = list(TRANSFORMS)[n % len(TRANSFORMS)]  # each original gets one transform, in turn
        out = dest / "copies" / name.replace("/", "-").replace(" ", "_") / f"{src.stem}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        maker = TRANSFORMS[name][1]
        if maker is None:
            shutil.copy2(src, out)
        else:
            maker(Image.open(src).convert("RGB"), out, rng)
        written = next(out.parent.glob(f"{src.stem}.*"))
        origin[str(written)], tag[str(written)], label[str(written)] = str(orig), name, row["label"]
    return origin, tag, label


def predicted_pairs(groups) -> set[frozenset[str]]:
    return {frozenset((a.photo.path, b.photo.path)) for g in groups for a, b in itertools.combinations(g.members, 2)}


def quality(lib, origin: dict, tag: dict, label: dict, dump: bool = False, **thresholds: float | None) -> None:
    from imgsearch.config import DupOptions

    truth = {frozenset((p, o)) for p, o in origin.items() if p != o}
    originals = [p for p in origin if tag[p] == "original"]
    clean_pairs = len(originals) * (len(originals) - 1) // 2
    same_class = sum(1 for a, b in itertools.combinations(originals, 2) if label[a] == label[b])
    print(f"set: {len(originals)} originals, {len(truth)} true pairs, {clean_pairs} clean pairs "
          f"({same_class} same-class hard negatives)")
    for tiers in (("exact",), ("exact", "near"), ("exact", "near", "similar")):
        t0 = time.perf_counter()
        report = lib.duplicates(DupOptions(tiers=tiers, **thresholds))
        pred = predicted_pairs(report.groups)
        tp = len(pred & truth)
        p = tp / len(pred) if pred else 1.0
        r_exact = [frozenset((k, origin[k])) for k in origin if tag[k] == "exact copy"]
        want = truth if "near" in tiers else set(r_exact)
        r = len(pred & want) / len(want)
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        false_clean = [pr for pr in pred if all(tag[x] == "original" for x in pr)]
        hard = [pr for pr in false_clean if len({label[x] for x in pr}) == 1]
        print(f"tiers {'+'.join(tiers):<20} pairs {len(pred):>5}  P {p:.4f}  R {r:.4f}  F1 {f1:.4f}  "
              f"false/10k clean {1e4 * len(false_clean) / clean_pairs:.2f}  hard negatives grouped {len(hard)}  "
              f"({time.perf_counter() - t0:.2f} s; thresholds {report.thresholds})")
        if tiers == ("exact", "near") and dump:
            for pr in sorted(pred - truth, key=sorted):
                a, b = sorted(pr)
                g = next(g for g in report.groups if any(m.photo.path == a for m in g.members))
                ev = [(m.relation, round(m.cosine or 1, 3), m.hamming, m.fine, m.transform, Path(m.photo.path).name)
                      for m in g.members if m.photo.path in pr]
                print(f"    false: {tag[a]} ({label[a]}) ~ {tag[b]} ({label[b]}): {ev} keeper {g.keeper.path}")
            for k in [k for k in origin if tag[k] != "original" and frozenset((k, origin[k])) not in pred][:40]:
                print(f"    missed: {tag[k]}: {k}")
        if tiers == ("exact", "near"):
            for name in TRANSFORMS:
                keys = [frozenset((k, origin[k])) for k in origin if tag[k] == name]
                hit = sum(k in pred for k in keys)
                print(f"    {name:<18} recall {hit / len(keys):.3f} ({hit}/{len(keys)})")


def hash_separation(lib, origin: dict, tag: dict) -> None:
    """pHash distances (coarse of 64 bits, fine of 256) of true copies per transform vs all negative pairs."""
    from imgsearch import store
    from imgsearch.dups.hashing import hash_array, hash_distances

    with lib.session() as session:
        hashes = store.image_hashes(session)
        paths = store.paths_for(session, list(hashes))
    code = {paths[i]: hash_array([h.phashes])[0] for i, h in hashes.items()}
    for name in TRANSFORMS:
        keys = [k for k in origin if tag[k] == name]
        coarse, _, fine, crop = hash_distances(np.stack([code[origin[k]] for k in keys]),
                                               np.stack([code[k] for k in keys]))
        print(f"    {name:<18} copies: coarse max {coarse.max():3d}, fine max {fine.max():3d}, crop max {crop.max():3d}")
    originals = [k for k in origin if tag[k] == "original"]
    a, b = np.triu_indices(len(originals), 1)
    stack = np.stack([code[k] for k in originals])
    coarse, _, fine, crop = hash_distances(stack[a], stack[b])
    close = coarse <= 10
    print(f"    negatives: {len(a)} pairs, coarse min {coarse.min()}, fine min {fine.min()}, crop min {crop.min()} "
          f"({(crop <= 56).sum()} at or below 56); "
          f"{close.sum()} within 10 coarse bits, their fine distances >= {fine[close].min() if close.any() else '-'}")


def synthetic(lib, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(vectors, pHash codes, pixel codes, sources) of n made-up photos: 90% distinct (the library's real vectors and
    fingerprints resampled with noise, each with a picture of its own), then 10% near copies of them (the rows
    in `sources`)."""
    from imgsearch import store
    from imgsearch.dups.hashing import hash_array, pixel_array

    with lib.session() as session:
        model = store.list_models(session)[0]
        ids, vectors = store.load_vectors(session, model.id, model.dim)
        codes = [h.phashes for h in store.image_hashes(session).values() if h.phashes]
    base_codes, base_pictures = hash_array(codes), pixel_array(codes)

    def flip_bits(c: np.ndarray, lo: int, hi: int, count: int) -> None:
        for _ in range(count):  # one random bit in [lo, hi) bytes of every variant, per photo
            bit = rng.integers(lo * 8, hi * 8, len(c))
            c[np.arange(len(c)), :, bit // 8] ^= (1 << (bit % 8)).astype(np.uint8)[:, None]

    m = n - n // 10
    pick = rng.integers(0, len(vectors), m)
    v = vectors[pick] + rng.normal(0, 0.05, (m, vectors.shape[1])).astype(np.float32)
    drawn = rng.integers(0, len(base_codes), m)
    c = base_codes[drawn].copy()
    # distinct photos have distinct pictures: a random field (8x8, upsampled) over a real one's grey detail
    fields = np.kron(rng.integers(0, 256, (m, 8, 8)), np.ones((1, 4, 4))).reshape(m, -1)
    pictures = base_pictures[drawn].astype(np.float32)
    pictures[:, :fields.shape[1]] = 0.5 * pictures[:, :fields.shape[1]] + 0.5 * fields
    pictures = np.clip(pictures, 0, 255).astype(np.uint8)
    flip_bits(c, 0, 8, 8)
    flip_bits(c, 8, 40, 60)
    src = rng.integers(0, m, n - m)
    cv = v[src] + rng.normal(0, 0.005, (n - m, v.shape[1])).astype(np.float32)
    cc = c[src].copy()
    flip_bits(cc, 0, 8, 2)
    flip_bits(cc, 8, 40, 4)
    v = np.concatenate([v, cv])
    v = np.ascontiguousarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float32)
    c = np.concatenate([c, cc])
    pictures = np.concatenate([pictures, np.clip(pictures[src] + rng.normal(0, 2, pictures[src].shape), 0, 255)
                               .astype(np.uint8)])
    return v, c, pictures, src


def scale(lib, sizes: list[int], k: int) -> None:
    """Candidate search + scoring + grouping at n photos, from the real vectors and hashes resampled with noise."""
    from imgsearch.config import DupThresholds
    from imgsearch.dups.candidates import BINARY_EXACT_MAX, hash_neighbours, score_pairs, vector_neighbours
    from imgsearch.dups.grouping import group_pairs

    rng = np.random.default_rng(0)
    for n in sizes:
        v, c, pictures, sources = synthetic(lib, n, rng)
        rows = np.arange(n)
        t0 = time.perf_counter()
        cand = vector_neighbours(v, rows, k)
        t1 = time.perf_counter()
        cand = np.concatenate([cand, hash_neighbours(c, rows, k, 14, crops=True)])
        t2 = time.perf_counter()
        t = DupThresholds()  # and what the pair cache keeps (see imgsearch.dups.evidence)
        pairs = score_pairs(np.arange(n, dtype=np.int64), v, c, np.ones(n, dtype=bool), cand,
                            min(t.edited_cosine, t.similar_cosine) - 0.05, t.near_hamming + 4, t.near_cosine - 0.05,
                            max_crop=t.near_crop)
        t3 = time.perf_counter()
        vectors, each = {i: v[i] for i in range(n)}, {i: pictures[i] for i in range(n)}
        default = group_pairs(pairs, t, ("exact", "near"), vectors, 50, pictures=each)
        t4 = time.perf_counter()
        grouping = group_pairs(pairs, t, ("exact", "near", "similar"), vectors, 50, pictures=each)
        t5 = time.perf_counter()
        print(f"n={n:>7}: vector k-NN {t1 - t0:6.1f} s, hash k-NN {t2 - t1:6.1f} s, scoring {len(pairs)} pairs "
              f"{t3 - t2:5.1f} s, grouping exact+near {t4 - t3:5.1f} s ({len(default.groups)} groups), with similar "
              f"at {t.similar_cosine} {t5 - t4:5.1f} s ({len(grouping.groups)} groups); "
              f"total (exact+near) {t4 - t0:6.1f} s")
        if n > BINARY_EXACT_MAX:  # the hash search against the HNSW it replaced, on the same codes
            copies = n - len(sources) + np.arange(len(sources))  # each copy's row: is the pair with its source found?
            wanted = set(zip(sources.tolist(), copies.tolist()))
            for name, search in (("binary IVF (now)", hash_neighbours), ("binary HNSW efSearch 128 (before)", hnsw)):
                t0 = time.perf_counter()
                found = search(c, rows, k, 14)
                spent = time.perf_counter() - t0
                got = set(zip(found.min(axis=1).tolist(), found.max(axis=1).tolist()))
                print(f"    hash k-NN with {name}: {spent:5.1f} s, {len(got)} pairs within 14 bits; "
                      f"copies found with their original {len(wanted & got)}/{len(wanted)}")


def hnsw(codes: np.ndarray, rows: np.ndarray, k: int, max_hamming: int) -> np.ndarray:
    """imgsearch's hash search before the binary IVF: an HNSW (M 32, efSearch 128) over the coarse codes."""
    import faiss

    from imgsearch.dups.candidates import _row_pairs
    from imgsearch.images.fingerprint import COARSE_BYTES, TRANSFORMS

    index = faiss.IndexBinaryHNSW(COARSE_BYTES * 8, 32)
    index.hnsw.efConstruction, index.hnsw.efSearch = 64, 128
    index.add(np.ascontiguousarray(codes[:, 0, :COARSE_BYTES]))
    queries = np.ascontiguousarray(codes[rows][:, :len(TRANSFORMS), :COARSE_BYTES].reshape(-1, COARSE_BYTES))
    dist, found = index.search(queries, k + 1)
    return _row_pairs(np.repeat(rows, len(TRANSFORMS)), found, dist <= max_hamming)


def library_scale(lib, n: int, model_spec, work: Path) -> None:
    """`imgsearch dups` as a user runs it (a fresh process, the default tiers) on a library of n synthetic photos:
    rows, vectors and fingerprints written as index would (synthetic(); one small file per photo, so that no
    photo is "gone"); the first run (a full scan) and the next one (the pair cache, nothing new)."""
    import subprocess

    from imgsearch import store
    from imgsearch.images.fingerprint import assemble
    from imgsearch.library import Library
    from indexer.pipeline import model_record

    v, c, pictures, _ = synthetic(lib, n, np.random.default_rng(1))
    blobs = [assemble(c[i], pictures[i]) for i in range(n)]
    files = work / "synthetic"
    t0 = time.perf_counter()
    with Library.open(work / "lib-scale", create=True) as big:
        info = big.encoder(model_spec).info
        with big.sessions.begin() as session:
            model_id = store.get_or_create_model(session, model_record(info)).id
            for start in range(0, n, 10_000):
                chunk = range(start, min(n, start + 10_000))
                folder = files / f"{start // 10_000:03d}"
                folder.mkdir(parents=True)
                records = []
                for i in chunk:
                    path = folder / f"{i}.jpg"
                    path.write_bytes(i.to_bytes(8, "little"))
                    records.append((store.ImageRecord(str(path), 8, 1, f"{i:016x}", 4000, 3000, "JPEG"), None))
                ids, _ = store.save_images(session, records)
                store.save_vectors(session, model_id, ids, v[start:start + len(ids)])
                store.save_fingerprints(session, [(i, f"{n0:016x}", blobs[n0]) for i, n0 in zip(ids, chunk)])
    print(f"library of {n:,} synthetic photos written in {time.perf_counter() - t0:.0f} s")
    for run in ("first (full scan)", "second (pair cache)"):
        t0 = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", sys.executable, "-m", "imgsearch", "dups", "-L",
                               str(work / "lib-scale")], capture_output=True, text=True)  # GNU time: CPU s, peak KB
        wall = time.perf_counter() - t0
        assert done.returncode == 0, done.stderr[-2000:]
        user, system, peak_kb = done.stderr.split()[-3:]
        summary = [line for line in done.stderr.splitlines() if "group" in line and not line.startswith("Warning")][-1:]
        print(f"  imgsearch dups, {run}: {wall:6.1f} s wall, {float(user) + float(system):6.1f} s CPU, "
              f"peak RSS {int(peak_kb) / 1024:,.0f} MB; {summary[0].strip() if summary else done.stderr[-300:]}",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--originals", type=int, default=400)
    ap.add_argument("--model", default=None, help="local-dir:DIR (default: a random tiny model)")
    ap.add_argument("--scale", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--library", type=int, default=100_000, help="photos of the `imgsearch dups` run (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dump", action="store_true", help="print every false and missed near-exact pair")
    for name in ("near_cosine", "edited_cosine", "similar_cosine"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=float, default=None,
                        help="threshold for this model (default: the library's defaults)")
    ap.add_argument("--near-crop", type=int, default=None, help="crop-hash bits (default: the library's default)")
    args = ap.parse_args()

    from imgsearch.config import IndexSettings, ModelSpec
    from imgsearch.library import Library

    work = Path(tempfile.mkdtemp(prefix="dups-eval-"))
    model = args.model
    if model is None:
        from tests.tinyclip import write_model

        model = f"local-dir:{write_model(work / 'model', seed=0)}"
    origin, tag, label = make_set(work / "set", args.originals, args.seed)
    with Library.open(work / "lib", create=True) as lib:
        t0 = time.perf_counter()
        lib.index([work / "set"], ModelSpec(model, None), IndexSettings())
        print(f"indexed {len(origin)} photos in {time.perf_counter() - t0:.1f} s with {model}")
        t0 = time.perf_counter()
        first = lib.duplicates()
        print(f"first dups run (hashing {first.hashed} photos): {time.perf_counter() - t0:.1f} s")
        hash_separation(lib, origin, tag)
        quality(lib, origin, tag, label, args.dump, near_cosine=args.near_cosine, edited_cosine=args.edited_cosine,
                similar_cosine=args.similar_cosine, near_crop=args.near_crop)
        scale(lib, args.scale, 32)
        if args.library:
            library_scale(lib, args.library, ModelSpec(model, None), work)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
