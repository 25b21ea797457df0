"""Training data: (image, caption) pairs from a CSV, sidecar captions or class folders; decoding; the split."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
import numpy as np
from imgsearch.errors import UsageError
from imgsearch.images.crawl import image_files


DEFAULT_TEMPLATE = "a photo of a {label}"


@dataclass(frozen=True)
class Pair:
    path: str
    caption: str


def read_pairs(source: Path, template: str = DEFAULT_TEMPLATE) -> list[Pair]:
    """(image, caption) pairs from a CSV (path,caption), sidecar NAME.txt files, or class folders."""
    source = source.expanduser()
    if source.is_file():
        return _csv_pairs(source)
    if not source.is_dir():
        raise UsageError(f"{source} does not exist: give a CSV file (path,caption) or a folder of images.", "data")
    images = image_files(source)
    if not images:
        raise UsageError(f"no images under {source}", "data")
    sidecars = [p for p in images if p.with_suffix(".txt").is_file()]
    if sidecars:
        return [Pair(str(p), p.with_suffix(".txt").read_text(encoding="utf-8").strip()) for p in sidecars]
    if "{label}" not in template:
        raise UsageError(f"{{param}} {template!r} must contain {{label}}, e.g. 'a photo of a {{label}}'.", "template")
    pairs = [Pair(str(p), template.format(label=p.parent.name.replace("_", " ")))
             for p in images if p.parent != source]
    if not pairs:
        raise UsageError(f"{source} has no captions: add NAME.txt beside each image, one folder per class, or a CSV.",
                         "data")
    return pairs


def _csv_pairs(path: Path) -> list[Pair]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "caption"} <= set(rows[0]):
        raise UsageError(f"{path} needs a header with the columns path,caption.", "data")
    base = path.parent
    out = []
    for row in rows:
        p = Path(row["path"]).expanduser()
        out.append(Pair(str(p if p.is_absolute() else base / p), row["caption"].strip()))
    return out


def decode_all(pairs: Sequence[Pair], geometry, workers: int) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    """Every image at the model's input size (uint8), decoded once in parallel; bad files are skipped."""
    from imgsearch.images.decode import Decoded, default_pixel_limit
    from imgsearch.images.loader import load
    from imgsearch.workers import default_workers

    workers = default_workers() if workers < 0 else workers
    index = {p.path: n for n, p in enumerate(pairs)}
    pixels, kept, skipped = [], [], []
    for item in load(list(dict.fromkeys(p.path for p in pairs)), geometry, default_pixel_limit(max(1, workers)), workers):
        if isinstance(item, Decoded):
            pixels.append(item.pixels)
            kept.append(index[item.path])
        else:
            skipped.append((item.path, item.reason))
    order = np.argsort(kept)
    return (np.stack([pixels[i] for i in order]) if pixels else np.zeros((0, 1, 1, 3), np.uint8),
            [kept[i] for i in order], skipped)


def split_rows(n: int, captions: Sequence[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation rows; stratified by caption when captions repeat (class folders)."""
    rng = np.random.default_rng(seed)
    if fraction <= 0 or n < 10:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(captions):
        groups.setdefault(c, []).append(i)
    val: list[int] = []
    if len(groups) < n:
        for rows in groups.values():
            rows = list(rng.permutation(rows))
            val += rows[:int(round(len(rows) * fraction))]
    else:
        val = list(rng.permutation(n)[:max(1, int(n * fraction))])
    val_set = set(val)
    return np.array([i for i in range(n) if i not in val_set]), np.array(sorted(val_set), dtype=np.int64)
