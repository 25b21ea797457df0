"""What the duplicate-finding fingerprint adds to decoding, per photo, in one run.

Decodes real photos (../shared/data/clothing) as an index worker does for a 224-pixel model: read, JPEG draft,
orientation, fit to the model's geometry; once with the fingerprint (what `index` does now) and once without, in
turns, and prints the milliseconds per photo of each and their ratio.

    python bench/fingerprint_cost.py [--photos 300]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLOTHING = Path(__file__).resolve().parents[2] / "shared" / "data" / "clothing"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from imgsearch.images.decode import Geometry, _fit, decode_data, open_rgb, read_file
    from imgsearch.images.fingerprint import DRAFT_SIDE

    geo = Geometry(224, 224)
    files = [read_file(str(p)) for p in sorted(CLOTHING.rglob("*.jpg"))[:args.photos]]

    def without(f) -> None:
        img, _ = open_rgb(io.BytesIO(f.data), 10**9, draft_to=(max(224, DRAFT_SIDE),) * 2, name=f.path)
        _fit(img, geo)

    def with_fingerprint(f) -> None:
        assert decode_data(f, geo, 10**9).fingerprint is not None

    best = {"without": float("inf"), "with": float("inf")}
    for _ in range(args.rounds):
        for name, work in (("without", without), ("with", with_fingerprint)):
            t0 = time.perf_counter()
            for f in files:
                work(f)
            best[name] = min(best[name], (time.perf_counter() - t0) / len(files) * 1000)
    print(f"{len(files)} photos of ../shared/data/clothing, best of {args.rounds} rounds, one core:")
    print(f"decode for the model alone:          {best['without']:6.2f} ms per photo")
    print(f"decode + duplicate fingerprint:      {best['with']:6.2f} ms per photo")
    print(f"ratio: {best['with'] / best['without']:.2f}x")


if __name__ == "__main__":
    main()
