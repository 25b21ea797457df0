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
        runtime = getattr(self.encoder, "describe", None)
        return f"this machine ({runtime()})" if runtime else "this machine"

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
        transfer0, encode0 = getattr(encoder, "transfer_s", 0.0), getattr(encoder, "encode_s", 0.0)
        try:
            yield from embed_stream(items, encoder, settings.batch_size or encoder.batch_size)
        finally:
            times.add(transfer_s=getattr(encoder, "transfer_s", 0.0) - transfer0,
                      encode_s=getattr(encoder, "encode_s", 0.0) - encode0)

    def _tensor_decoder(self, max_pixels: int):  # TensorDecoder | None; imports torch
        """A GPU JPEG decoder next to the CPU workers, when the encoder runs on CUDA (or when asked)."""
        device = getattr(self.encoder, "device", None)
        wanted = self.settings.gpu_decode
        if wanted is False or device is None or (wanted is None and getattr(device, "type", "") != "cuda"):
            return None
        from imgsearch.images.gpu import TensorDecoder, gpu_decode_works

        if not gpu_decode_works(str(device)):
            return None
        return TensorDecoder(self.encoder.info.geometry, str(device), max_pixels)
