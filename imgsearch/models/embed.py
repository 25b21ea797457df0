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
    """Files whose vectors are ready (rows of `vectors` match `decoded`), and files skipped meanwhile."""

    decoded: list[Decoded] = field(default_factory=list)
    vectors: np.ndarray | None = None
    skipped: list[Skipped] = field(default_factory=list)


def embed_stream(items: Iterable[Decoded | Skipped], encoder: Encoder, batch_size: int) -> Iterator[Batch]:
    """Yield a Batch every `batch_size` decoded files (and a last partial one)."""
    batch = Batch()
    for item in items:
        if isinstance(item, Skipped):
            batch.skipped.append(item)
            continue
        batch.decoded.append(item)
        if len(batch.decoded) >= batch_size:
            yield _encode(batch, encoder)
            batch = Batch()
    if batch.decoded or batch.skipped:
        yield _encode(batch, encoder)


def _encode(batch: Batch, encoder: Encoder) -> Batch:
    if batch.decoded:
        pixels = [d.pixels for d in batch.decoded]
        if all(isinstance(p, np.ndarray) for p in pixels):
            batch.vectors = encoder.encode_pixels(np.stack(pixels))
        else:  # some were decoded on the GPU: stack there
            from imgsearch.images.gpu import stack_on_device

            batch.vectors = encoder.encode_pixels(stack_on_device(pixels))
    return batch
