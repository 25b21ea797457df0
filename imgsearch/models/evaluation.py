"""`imgsearch eval`: how well a model finds a labelled folder's photos (one folder per class).

Sits beside library.py (it may use the indexer's parallel loader); needs no library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgsearch.models.encoder import Encoder
from imgsearch.errors import UsageError
from imgsearch.images.crawl import image_files
from imgsearch.images.decode import default_pixel_limit
from imgsearch.models.zeroshot import folder_metrics, label_metrics, label_vectors
from imgsearch.models.embed import embed_stream
from imgsearch.images.loader import load
from imgsearch.workers import default_workers


@dataclass
class EvalReport:
    folder: str
    images: int
    labels: list[str]
    templates: list[str]
    k: int
    metrics: dict[str, float]
    skipped: list[tuple[str, str]]
    per_label: dict[str, dict[str, float]] = field(default_factory=dict)  # label -> images, t2i_p@k, t2i_r@k, accuracy


def labelled_images(folder: Path) -> list[tuple[str, str]]:
    """(path, label) for every image in a class folder directly under `folder`."""
    folder = folder.expanduser()
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder: give a folder with one sub-folder of images per label.", "folder")
    out = [(str(p), d.name.replace("_", " ")) for d in sorted(folder.iterdir()) if d.is_dir()
           for p in image_files(d)]
    if len({label for _, label in out}) < 2:
        raise UsageError(f"{folder} needs at least two label folders with images in them.", "folder")
    return out


def encode_paths(encoder: Encoder, paths: Sequence[str],
                 workers: int = -1) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """(paths encoded, their vectors, skipped (path, reason)) through the indexer's decoder and batching."""
    workers = default_workers() if workers < 0 else workers
    done, vectors, skipped = [], [], []
    items = load(list(paths), encoder.info.geometry, default_pixel_limit(max(1, workers)), workers)
    for batch in embed_stream(items, encoder, encoder.batch_size):
        skipped += [(s.path, s.reason) for s in batch.skipped]
        if batch.vectors is not None:
            done += [d.path for d in batch.decoded]
            vectors.append(batch.vectors)
    return done, (np.concatenate(vectors) if vectors else np.zeros((0, encoder.info.dim), np.float32)), skipped


def evaluate_folder(encoder: Encoder, folder: Path, templates: Sequence[str], k: int = 10,
                    workers: int = -1) -> EvalReport:
    items = labelled_images(folder)
    labels = sorted({label for _, label in items})
    label_of = dict(items)
    paths, vectors, skipped = encode_paths(encoder, [p for p, _ in items], workers)
    truth = np.array([labels.index(label_of[p]) for p in paths])
    label_vecs = label_vectors(encoder, labels, templates)
    metrics = folder_metrics(vectors, truth, label_vecs, k)
    per = label_metrics(vectors, truth, label_vecs, k)
    per_label = {label: {name: (int(v[n]) if name == "images" else round(float(v[n]), 6)) for name, v in per.items()}
                 for n, label in enumerate(labels)}
    return EvalReport(str(folder), len(paths), labels, list(templates), k, metrics, skipped, per_label)
