"""Relevance feedback ("more like these, fewer like those") against the text query alone, on the clothing validation
split (341 photos, 10 classes) with a model trained on the train split.

For each class, the query "a photo of a {label}" gives a first page of 10. A simulated user marks that page by the
labels: the photos of the class up, the others down (`imgsearch search Q --like ID --unlike ID`), once. Measured:

- precision@10 of the first page before and after the marks (what the user sees; the liked photos stay in it);
- precision@10 of the next 10 photos not yet judged: the text query's results 11-20 against the re-ranked results
  without the 10 judged ones (the residual ranking: a fair comparison, no credit for photos already marked).

    python bench/feedback.py [--epochs 10] [--model DIR]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLOTHING = Path(__file__).resolve().parents[2] / "shared" / "data" / "clothing"
TEMPLATE = "a photo of a {label}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="a trained model's folder (default: train one)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--weights", nargs="*", default=[],
                    help="other LIKED,UNLIKED weights to compare with the defaults, e.g. 1.5,0.5")
    a = ap.parse_args()
    from imgsearch import Library, ModelSpec, SearchOptions, parse_query
    from imgsearch.search import query as query_mod

    work = Path(tempfile.mkdtemp(prefix="bench-feedback-"))
    model = a.model
    if model is None:
        model = work / "model"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "imgsearch", "train", str(CLOTHING / "train"), "--out", str(model),
                        "--arch", "small", "--epochs", str(a.epochs)], check=True)
        print(f"trained {a.epochs} epochs in {time.perf_counter() - t:.0f} s", flush=True)
    spec = ModelSpec(f"local-dir:{model}", None)
    validation = CLOTHING / "validation"
    labels = sorted(p.name for p in validation.iterdir() if p.is_dir())
    with Library.open(work / "lib", create=True) as lib:
        lib.index([validation], spec)

        def label(path: str) -> str:
            return Path(path).parent.name

        weights = [(query_mod.LIKED_WEIGHT, query_mod.UNLIKED_WEIGHT)] + \
            [tuple(float(x) for x in w.split(",")) for w in a.weights]
        for liked_weight, unliked_weight in weights:
            query_mod.LIKED_WEIGHT, query_mod.UNLIKED_WEIGHT = liked_weight, unliked_weight
            rows = []
            for name in labels:
                terms = parse_query([TEMPLATE.format(label=name)])
                first = lib.search(terms, SearchOptions(k=20), spec)
                page, following = first[:10], first[10:20]
                liked = [r.id for r in page if label(r.path) == name]
                unliked = [r.id for r in page if label(r.path) != name]
                again = lib.search(query_mod.feedback_terms(terms, liked, unliked), SearchOptions(k=30), spec)
                judged = {r.id for r in page}
                residual = [r for r in again if r.id not in judged][:10]
                rows.append((name, sum(label(r.path) == name for r in page) / 10,
                             sum(label(r.path) == name for r in again[:10]) / 10,
                             sum(label(r.path) == name for r in following) / max(1, len(following)),
                             sum(label(r.path) == name for r in residual) / max(1, len(residual))))
            report(rows, liked_weight, unliked_weight)


def report(rows: list, liked_weight: float, unliked_weight: float) -> None:
    print(f"\nliked weight {liked_weight}, unliked weight {unliked_weight}")
    print(f"{'class':<12} {'P@10 text':>10} {'P@10 marked':>12} {'next 10, text':>14} {'next 10, marked':>16}")
    for name, *values in rows:
        print(f"{name:<12} " + " ".join(f"{v:>{w}.2f}" for v, w in zip(values, (10, 12, 14, 16))))
    means = [statistics.mean(r[i] for r in rows) for i in range(1, 5)]
    print(f"{'mean':<12} " + " ".join(f"{v:>{w}.3f}" for v, w in zip(means, (10, 12, 14, 16))))
    print(f"one round of marks: first page {means[1] / means[0]:.2f}x the text query's precision, the next 10 "
          f"unjudged photos {means[3] / means[2]:.2f}x", flush=True)


if __name__ == "__main__":
    main()
