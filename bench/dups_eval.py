"""Duplicate detection quality and speed on a labelled set made from real photos (../shared/data/clothing).

Every original gets copies made by one transform each (see TRANSFORMS): exact copies, JPEG
re-encodes at quality 50-95, resizes, 5% crops, brightness and contrast shifts, PNG and WebP
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


def _crop(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    dx, dy = int(w * 0.05), int(h * 0.05)
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


def predicted_pairs(groups) -> set[frozenset[str]]:  # noqa: ANN001
    return {frozenset((a.photo.path, b.photo.path)) for g in groups for a, b in itertools.combinations(g.members, 2)}


def quality(lib, origin: dict, tag: dict, label: dict) -> None:  # noqa: ANN001
    from imgsearch.config import DupOptions

    truth = {frozenset((p, o)) for p, o in origin.items() if p != o}
    originals = [p for p in origin if tag[p] == "original"]
    clean_pairs = len(originals) * (len(originals) - 1) // 2
    same_class = sum(1 for a, b in itertools.combinations(originals, 2) if label[a] == label[b])
    print(f"set: {len(originals)} originals, {len(truth)} true pairs, {clean_pairs} clean pairs "
          f"({same_class} same-class hard negatives)")
    for tiers in (("exact",), ("exact", "near"), ("exact", "near", "similar")):
        t0 = time.perf_counter()
        report = lib.duplicates(DupOptions(tiers=tiers))
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
        if tiers == ("exact", "near"):
            for name in TRANSFORMS:
                keys = [frozenset((k, origin[k])) for k in origin if tag[k] == name]
                hit = sum(k in pred for k in keys)
                print(f"    {name:<18} recall {hit / len(keys):.3f} ({hit}/{len(keys)})")


def scale(lib, sizes: list[int], k: int) -> None:  # noqa: ANN001
    """Candidate search + scoring + grouping at n photos, from the real vectors and hashes resampled with noise."""
    from imgsearch import store
    from imgsearch.config import DupThresholds
    from imgsearch.duplicates import group_pairs, hash_neighbours, score_pairs, vector_neighbours

    with lib.session() as session:
        model = store.list_models(session)[0]
        ids, vectors = store.load_vectors(session, model.id, model.dim)
        codes = [h.phashes for h in store.image_hashes(session).values() if h.phashes]
    base_codes = np.frombuffer(b"".join(codes), dtype=np.uint8).reshape(len(codes), 8, 8)
    rng = np.random.default_rng(0)
    for n in sizes:
        pick = rng.integers(0, len(vectors), n)
        v = vectors[pick] + rng.normal(0, 0.05, (n, vectors.shape[1])).astype(np.float32)
        v = np.ascontiguousarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float32)
        c = base_codes[rng.integers(0, len(base_codes), n)].copy()
        flips = rng.integers(0, 64, (n, 6))  # 6 random bits per photo: distinct hashes, realistic spread
        for j in range(6):
            c[np.arange(n), :, flips[:, j] // 8] ^= (1 << (flips[:, j] % 8)).astype(np.uint8)[:, None]
        rows = np.arange(n)
        t0 = time.perf_counter()
        cand = vector_neighbours(v, rows, k)
        t1 = time.perf_counter()
        cand += hash_neighbours(c, rows, k, 14)
        t2 = time.perf_counter()
        pairs = score_pairs(np.arange(n, dtype=np.int64), v, c, np.ones(n, dtype=bool), cand)
        t3 = time.perf_counter()
        grouping = group_pairs(pairs, DupThresholds(), ("exact", "near", "similar"),
                               {i: v[i] for i in range(n)}, 50)
        t4 = time.perf_counter()
        print(f"n={n:>7}: vector k-NN {t1 - t0:6.1f} s, hash k-NN {t2 - t1:6.1f} s, scoring {len(pairs)} pairs "
              f"{t3 - t2:5.1f} s, grouping {t4 - t3:5.1f} s; total {t4 - t0:6.1f} s, {len(grouping.groups)} groups")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--originals", type=int, default=400)
    ap.add_argument("--model", default=None, help="local-dir:DIR (default: a random tiny model)")
    ap.add_argument("--scale", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--seed", type=int, default=0)
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
        quality(lib, origin, tag, label)
        scale(lib, args.scale, 32)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
