"""imgsearch's default `dups` (exact + near) against imagededup's PHash, DHash and WHash (their defaults: Hamming
distance <= 10 of 64 bits), side by side on the same two sets, in one run:

- the labelled transform set of bench/dups_eval.py (originals from ../shared/data/clothing, one copy each by one
  transform): precision, recall per transform, false pairs per 10,000 pairs of distinct originals;
- every photo of ../shared/data/clothing (3,409 distinct garments; the one photo filed under two classes is the
  only true copy): how many pairs each method calls copies, per 10,000 pairs.

imagededup (0.3.x, CPU) lives in its own environment (it pins its own dependencies); give its Python:

    python -m venv /tmp/idd && /tmp/idd/bin/pip install imagededup
    python bench/dups_imagededup.py --imagededup-python /tmp/idd/bin/python [--originals 400]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dups_eval import CLOTHING, TRANSFORMS, make_set, predicted_pairs

IMAGEDEDUP = r"""
import json, sys, time
from pathlib import Path
from imagededup.methods import PHash, DHash, WHash
root = Path(sys.argv[1])
out = {}
for method in (PHash, DHash, WHash):
    t0 = time.perf_counter()
    found = method(verbose=False).find_duplicates(image_dir=root, recursive=True, num_enc_workers=2, num_dist_workers=2)
    out[method.__name__] = {"pairs": sorted({tuple(sorted((str(root / a), str(root / b))))
                                             for a, dups in found.items() for b in dups}),
                            "seconds": time.perf_counter() - t0}
print(json.dumps(out))
"""


def imagededup_pairs(python: str, root: Path) -> dict[str, tuple[set[frozenset[str]], float]]:
    done = subprocess.run([python, "-c", IMAGEDEDUP, str(root)], capture_output=True, text=True, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: ({frozenset(p) for p in v["pairs"]}, v["seconds"]) for name, v in found.items()}


def imgsearch_pairs(root: Path, work: Path, model: str) -> tuple[set[frozenset[str]], float]:
    from imgsearch.config import DupOptions, IndexSettings, ModelSpec
    from imgsearch.library import Library

    with Library.open(work / f"lib-{root.name}", create=True) as lib:
        lib.index([root], ModelSpec(model, None), IndexSettings())
        t0 = time.perf_counter()
        report = lib.duplicates(DupOptions(tiers=("exact", "near")))
        return predicted_pairs(report.groups), time.perf_counter() - t0


def labelled(methods: dict[str, tuple[set[frozenset[str]], float]], origin: dict, tag: dict) -> None:
    truth = {frozenset((p, o)) for p, o in origin.items() if p != o}
    originals = [p for p in origin if tag[p] == "original"]
    clean = len(originals) * (len(originals) - 1) // 2
    names = list(methods)
    print(f"\nlabelled set: {len(originals)} originals, {len(truth)} copies, {clean} pairs of distinct originals")
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    row = {n: (pred, s) for n, (pred, s) in methods.items()}
    cells = []
    for n in names:
        pred = row[n][0]
        cells.append(f"{len(pred & truth) / len(pred):.3f}" if pred else "-")
    print("| precision | " + " | ".join(cells) + " |")
    print("| recall, all copies | " + " | ".join(f"{len(row[n][0] & truth) / len(truth):.3f}" for n in names) + " |")
    for name in TRANSFORMS:
        keys = [frozenset((k, origin[k])) for k in origin if tag[k] == name]
        print(f"| {name} | " + " | ".join(f"{sum(k in row[n][0] for k in keys) / len(keys):.3f}" for n in names) + " |")
    false = {n: [p for p in row[n][0] if all(tag[x] == "original" for x in p)] for n in names}
    print("| false pairs / 10k distinct | " + " | ".join(f"{1e4 * len(false[n]) / clean:.2f}" for n in names) + " |")
    print("| seconds (hashing + search) | " + " | ".join(f"{row[n][1]:.1f}" for n in names) + " |")


def clothing(methods: dict[str, tuple[set[frozenset[str]], float]], count: int) -> None:
    pairs = count * (count - 1) // 2
    print(f"\nall of ../shared/data/clothing: {count} photos, {pairs} pairs")
    for name, (pred, seconds) in methods.items():
        print(f"| {name} | {len(pred)} pairs | {1e4 * len(pred) / pairs:.3f} per 10k | {seconds:.1f} s |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imagededup-python", required=True)
    ap.add_argument("--originals", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from tests.tinyclip import write_model

    work = Path(tempfile.mkdtemp(prefix="dups-vs-imagededup-"))
    model = f"local-dir:{write_model(work / 'model', seed=0)}"
    origin, tag, _ = make_set(work / "set", args.originals, args.seed)
    ours = imgsearch_pairs(work / "set", work, model)
    labelled({"imgsearch (exact + near)": ours} | imagededup_pairs(args.imagededup_python, work / "set"), origin, tag)
    photos = sorted(CLOTHING.rglob("*.jpg"))
    whole = imgsearch_pairs(CLOTHING, work, model)
    clothing({"imgsearch (exact + near)": whole} | imagededup_pairs(args.imagededup_python, CLOTHING), len(photos))
    print(f"\nimgsearch's groups on all photos: {sorted(sorted(Path(x).name for x in p) for p in whole[0])}")


if __name__ == "__main__":
    main()
