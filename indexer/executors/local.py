"""The local executor: decode in worker processes (and on the GPU next to them when the encoder runs on
CUDA), encode in this process, batch by batch with a bounded look-ahead."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from imgsearch.config import IndexSettings
from imgsearch.images.decode import default_pixel_limit
from imgsearch.images.loader import GPU_SIDE_WORKERS, StageTimes, load
from imgsearch.models.embed import Batch, embed_stream
from imgsearch.models.encoder import Encoder
from imgsearch.workers import default_workers


class LocalExecutor:
    def __init__(self, encoder: Encoder, settings: IndexSettings = IndexSettings()) -> None:
        self.encoder, self.settings = encoder, settings

    def describe(self) -> str:
        """Where and with what the run encodes: "this machine (OpenVINO 2026.4.1 int8)"."""
        return f"this machine ({self.encoder.describe()})"

    def embed(self, paths: Sequence[str], times: StageTimes) -> Iterator[Batch]:
        settings, encoder = self.settings, self.encoder
        auto_workers = settings.workers < 0
        workers = default_workers() if auto_workers else settings.workers
        max_pixels = settings.max_image_pixels or default_pixel_limit(max(1, workers))
        decoder = self._tensor_decoder(max_pixels)
        if decoder is not None and auto_workers:
            workers = min(workers, GPU_SIDE_WORKERS)
        # an explicit workers count with GPU decoding lets the CPU workers decode JPEGs too
        items = load(list(paths), encoder.info.geometry, max_pixels, workers, decoder, times,
                     share_jpegs=not auto_workers, sampling=settings.video)
        transfer0, encode0 = encoder.transfer_s, encoder.encode_s
        try:
            yield from embed_stream(items, encoder, settings.batch_size or encoder.batch_size)
        finally:
            times.add(transfer_s=encoder.transfer_s - transfer0, encode_s=encoder.encode_s - encode0)

    def _tensor_decoder(self, max_pixels: int):  # TensorDecoder | None; imports torch
        """A GPU JPEG decoder next to the CPU workers, when the encoder runs on CUDA (or when asked)."""
        device = self.encoder.device
        wanted = self.settings.gpu_decode
        if wanted is False or self.encoder.folder is not None or (wanted is None and not device.startswith("cuda")):
            return None  # exports run on the CPU
        from imgsearch.images.gpu import TensorDecoder, gpu_decode_works

        if not gpu_decode_works(device):
            return None
        return TensorDecoder(self.encoder.info.geometry, device, max_pixels)
