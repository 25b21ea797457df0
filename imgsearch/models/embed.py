"""Group decoded files into batches and run them through an Encoder."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from imgsearch.models.encoder import Encoder
from imgsearch.images.decode import Decoded
from imgsearch.images.crawl import Skipped


@dataclass
class Batch:
    """Files whose vectors are ready (rows of `vectors` follow `decoded`: one per still, one per frame of a video),
    and files skipped meanwhile."""

    decoded: list[Decoded] = field(default_factory=list)
    vectors: np.ndarray | None = None
    skipped: list[Skipped] = field(default_factory=list)


def embed_stream(items: Iterable[Decoded | Skipped], encoder: Encoder, batch_size: int) -> Iterator[Batch]:
    """Yield a Batch once it holds `batch_size` images to encode (a video counts its frames), and a last partial
    one; a video is never split between batches."""
    batch, rows = Batch(), 0
    for item in items:
        if isinstance(item, Skipped):
            batch.skipped.append(item)
            continue
        batch.decoded.append(item)
        rows += item.rows
        if rows >= batch_size:
            yield encode_batch(batch, encoder, batch_size)
            batch, rows = Batch(), 0
    if batch.decoded or batch.skipped:
        yield encode_batch(batch, encoder, batch_size)


def encode_batch(batch: Batch, encoder: Encoder, batch_size: int) -> Batch:
    """Vectors for every row of the batch, in order, the encoder taking at most `batch_size` images at a time."""
    if not batch.decoded:
        return batch
    images = [frame for d in batch.decoded for frame in (d.pixels if d.times_ms is not None else [d.pixels])]
    parts = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        if all(isinstance(p, np.ndarray) for p in chunk):
            parts.append(encoder.encode_pixels(np.stack(chunk)))
        else:  # some were decoded on the GPU: stack there
            from imgsearch.images.gpu import stack_on_device

            parts.append(encoder.encode_pixels(stack_on_device(chunk)))
    batch.vectors = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return batch
