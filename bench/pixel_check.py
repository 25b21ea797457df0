"""How far apart the pixel check puts copies and distinct photos, and what it costs, against an earlier commit in the
same run.

The pairs are the ones `dups` would check: every copy of bench/dups_eval.py's labelled set against its original
(one transform each), and every pair of distinct photos among all of ../shared/data/clothing that the hashes send to
the pixel check (coarse and fine codes close, or an inner crop's code within --crop-bits). Each tree fingerprints
every photo with its own code, then scores every pair with its own check: the whole pictures' detail correlation
(lined up by the matched flip/rotation), the best-aligned inner crop's (either way round), the verdict, and the
check's time over the distinct pairs. And made-up second shots of each original's scene (the garment moved or turned
a little, the rest the same), which are not copies either. Prints, per tree, the lowest score of each kind of copy
and the highest of a distinct pair or a second shot (the one photo filed under two classes, a real copy, left out),
then the two side by side.

    python bench/pixel_check.py --baseline 8c11f71 [--originals 400] [--crop-bits 72]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from baseline import checked_out  # bench/, the folder of this script

REPO = Path(__file__).resolve().parent.parent
CLOTHING = REPO.parent / "shared" / "data" / "clothing"
REAL_COPY = {"6075b4a5", "637a56e4"}  # one photo filed under train/shorts and train/skirt


SECOND_SHOTS = {"second shot, moved 5%": ((0.05, 0.0), 0), "second shot, moved 3%, 2%": ((0.03, 0.02), 0),
                "second shot, turned 5 deg": ((0.0, 0.0), 5), "second shot, moved 2%, turned 3": ((0.02, 0.0), 3)}


def second_shots(originals: list[str], folder: Path) -> list[tuple[str, str, str]]:
    """A second shot of each scene, made up: the middle of the picture (the garment) moved or turned, the rest the
    same. Not copies: (shot, original, kind) for each original and each kind of SECOND_SHOTS."""
    from PIL import Image

    folder.mkdir(parents=True)
    out = []
    for n, original in enumerate(originals):
        img = Image.open(original).convert("RGB")
        w, h = img.size
        box = (w // 5, h // 5, 4 * w // 5, 4 * h // 5)
        for k, (kind, ((dx, dy), turned)) in enumerate(SECOND_SHOTS.items()):
            second = img.copy()
            second.paste(img.crop(box).rotate(turned, resample=Image.Resampling.BICUBIC),
                         (box[0] + int(dx * w), box[1] + int(dy * h)))
            second.save(folder / f"{n}-{k}.jpg", quality=90)
            out.append((str(folder / f"{n}-{k}.jpg"), original, kind))
    return out


def measure(originals: int, crop_bits: int, seed: int) -> dict:
    """Fingerprints, pairs and scores with the imgsearch importable here (sys.path decides which tree)."""
    from bench import dups_eval
    from imgsearch.dups import hashing as H
    from imgsearch.images.fingerprint import fingerprint_files, turn
    from imgsearch.progress import SilentProgress

    clothing = sorted(str(CLOTHING / row["path"]) for row in csv.DictReader(open(CLOTHING / "labels.csv")))
    work = Path(tempfile.mkdtemp(prefix="pixel-check-"))
    dups_eval.CLOTHING = CLOTHING  # (a baseline's tree lies elsewhere: ../shared is beside this one)
    origin, tag, _ = dups_eval.make_set(work, originals, seed)
    copies = sorted(p for p, o in origin.items() if p != o)
    shots = second_shots(sorted(p for p, o in origin.items() if p == o), work / "second-shots")
    paths = clothing + copies + [shot for shot, _, _ in shots]
    t0 = time.perf_counter()
    blobs = [blob for blob, _ in fingerprint_files(paths, -1, SilentProgress())]
    fingerprint_s = time.perf_counter() - t0
    codes, pictures = H.hash_array(blobs), H.pixel_array(blobs)
    stem = {Path(p).stem: i for i, p in enumerate(clothing)}

    pairs: list[tuple[int, int, int, int, str]] = []  # (a, b, transform, crop distance, kind)
    for n, copy in enumerate(copies, len(clothing)):
        _, transform, _, crop = H.hamming(codes[stem[Path(origin[copy]).stem]], codes[n])
        pairs.append((stem[Path(origin[copy]).stem], n, transform, crop, tag[copy]))
    for n, (_, original, kind) in enumerate(shots, len(clothing) + len(copies)):
        _, transform, _, crop = H.hamming(codes[stem[Path(original).stem]], codes[n])
        pairs.append((stem[Path(original).stem], n, transform, crop, kind))
    for a in range(len(clothing)):
        b = np.arange(a + 1, len(clothing))
        coarse, transform, fine, crop = H.hash_distances(np.broadcast_to(codes[a], (len(b),) + codes[a].shape),
                                                         codes[b])
        for j in np.flatnonzero(((coarse <= 10) & (fine <= 40)) | (crop <= crop_bits)):
            names = {Path(clothing[a]).stem[:8], Path(clothing[int(b[j])]).stem[:8]}
            pairs.append((a, int(b[j]), int(transform[j]), int(crop[j]), "real copy" if names == REAL_COPY else "distinct"))

    fine_pictures, grey, _ = H._parts(pictures)
    detail = H._detail(grey)
    rows: dict[str, list] = defaultdict(list)
    for a, b, transform, _, kind in pairs:
        whole = float(H._correlation(H._detail(turn(grey[a:a + 1], transform)), detail[b:b + 1])[0][0])
        trimmed = max(H._best_crop(fine_pictures[a], detail[b])[0], H._best_crop(fine_pictures[b], detail[a])[0])
        rows[kind].append((whole, trimmed))
    a, b, transform, crop, kind = (np.array(column) for column in zip(*pairs))
    verdict = H.same_pictures(pictures[a], pictures[b], transform, H.trimmed_bars(crop, crop_bits))
    distinct = kind == "distinct"
    t0 = time.perf_counter()
    H.same_pictures(pictures[a[distinct]], pictures[b[distinct]], transform[distinct],
                    H.trimmed_bars(crop[distinct], crop_bits))
    check_s = time.perf_counter() - t0
    return {"rows": rows, "found": {k: int(verdict[kind == k].sum()) for k in rows},
            "pairs": {k: len(v) for k, v in rows.items()}, "check_ms": 1000 * check_s / max(1, int(distinct.sum())),
            "fingerprint_s": fingerprint_s}


def report(name: str, m: dict) -> dict[str, str]:
    """Per kind of pair: how many pass the check, and the scores nearest the other side (a copy's lowest, a distinct
    pair's highest; the whole pictures' for untrimmed copies, the best crop's for trimmed ones)."""
    out = {}
    for kind, scores in sorted(m["rows"].items()):
        whole, trimmed = (np.array([s[n] for s in scores]) for n in (0, 1))
        passed = f"{m['found'][kind]} of {m['pairs'][kind]} pass"
        if kind == "distinct" or kind.startswith("second shot"):
            out[kind] = f"{passed}; highest whole {whole.max():.3f}, highest crop {trimmed.max():.3f}"
        elif kind.startswith("crop"):
            out[kind] = f"{passed}; lowest crop {trimmed.min():.3f}"
        else:
            out[kind] = f"{passed}; lowest whole {whole.min():.3f}"
    out["check time"] = f"{m['check_ms']:.2f} ms a distinct pair"
    out["fingerprinting"] = f"{m['fingerprint_s']:.1f} s for every photo"
    print(f"== {name}")
    for kind, line in out.items():
        print(f"  {kind:18s} {line}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default=None, help="a commit to compare with (checked out in a git worktree)")
    ap.add_argument("--originals", type=int, default=400)
    ap.add_argument("--crop-bits", type=int, default=72, help="crop-hash distance that sends a pair to the check")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one tree's figures, for the comparison
    args = ap.parse_args()
    if args.json:
        print(json.dumps(measure(args.originals, args.crop_bits, args.seed)))
        return
    results = {}
    trees = [("this tree", REPO)]
    with contextlib.ExitStack() as stack:
        if args.baseline:
            scratch = Path(tempfile.mkdtemp(prefix="pixel-check-base-"))
            trees.insert(0, (args.baseline, stack.enter_context(checked_out(args.baseline, scratch / "tree"))))
        for name, tree in trees:
            # the tree's own imgsearch, this file's measure(): PYTHONPATH puts the tree first
            done = subprocess.run([sys.executable, __file__, "--json", "--originals", str(args.originals),
                                   "--crop-bits", str(args.crop_bits), "--seed", str(args.seed)],
                                  capture_output=True, text=True, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                                  cwd=tree)
            if done.returncode:
                sys.exit(done.stderr[-3000:])
            results[name] = report(name, json.loads(done.stdout.splitlines()[-1]))
    if len(results) == 2:
        (old_name, old), (new_name, new) = results.items()
        print(f"\n| | {old_name} | {new_name} |\n|---|---|---|")
        for key in new:
            print(f"| {key} | {old.get(key, '')} | {new[key]} |")


if __name__ == "__main__":
    main()
