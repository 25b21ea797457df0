"""Which encoder serves a model: the model policy a library follows.

- A spec is loaded once (`get`), by the library's loader (open_clip on PyTorch, or an export given as the model).
- The library's own model is served by its cached export when indexing made one (no PyTorch import), else by the
  open_clip model, checked to be the weights its vectors were made with (`for_vectors`).
- An index run gets the export given as the model (or, without PyTorch, Immich's export of the weights named), else
  the open_clip model or its export to the runtime asked for (else the fastest here), made now if needed
  (`for_indexing`); a Ray run's workers encode with PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from imgsearch.config import IndexSettings, ModelSpec, Precision, Runtime
from imgsearch.errors import ModelMismatchError, UsageError
from imgsearch.models import runtimes
from imgsearch.models.encoder import Encoder, load_encoder
from imgsearch.progress import Progress, SilentProgress
from imgsearch.workers import KeyedLocks

EncoderLoader = Callable[[ModelSpec], Encoder]
K = TypeVar("K")


class EncoderCache(Generic[K]):
    """Encoders loaded once per key and shared; safe between threads (one load per key at a time)."""

    def __init__(self, loader: Callable[[K], Encoder | None]) -> None:
        self._load = loader
        self._encoders: dict[K, Encoder] = {}
        self._lock_for = KeyedLocks()

    def get(self, key: K) -> Encoder | None:
        """The loaded encoder (a loader's None, "none there yet", is returned but not kept: asked again next time)."""
        with self._lock_for(key):
            if key not in self._encoders:
                loaded = self._load(key)
                if loaded is None:
                    return None
                self._encoders[key] = loaded
            return self._encoders[key]

    def forget(self, key: K) -> None:
        """Load `key` again on the next get (what it loads from changed)."""
        with self._lock_for(key):
            self._encoders.pop(key, None)


class Encoders:
    """The encoders of one library. `loader`: how a spec is loaded (None: open_clip and exports, whose cached exports
    may then stand in for PyTorch; a test's loader is used as it is)."""

    def __init__(self, exports_dir: Path, loader: EncoderLoader | None = None) -> None:
        self.exports_dir = exports_dir  # once per user, shared by every library
        self._specs: EncoderCache[ModelSpec] = EncoderCache(loader or load_encoder)
        self._own = loader is None
        self._exported: EncoderCache[str] = EncoderCache(lambda key: runtimes.open_export(exports_dir, key))

    def get(self, spec: ModelSpec) -> Encoder:
        encoder = self._specs.get(spec)
        assert encoder is not None  # loaders raise rather than return None
        return encoder

    def for_vectors(self, key: str, own: ModelSpec, spec: ModelSpec | None) -> Encoder:
        """The encoder for vectors made by the weights `key` of the library's model `own` (asked for as `spec`, or
        not): its export when indexing made one, else the model, checked to be those weights."""
        if self._own and spec in (None, own):
            exported = self._exported.get(key)  # None (not kept): no export yet, an index run may make one
            if exported is not None:
                return exported
        encoder = self.get(spec or own)
        if encoder.info.key != key:
            raise ModelMismatchError(
                f"the weights of {own.name} changed since this library was indexed with them: "
                "run `imgsearch index` again to re-encode, or restore the original checkpoint.")
        return encoder

    def for_indexing(self, spec: ModelSpec, settings: IndexSettings, folders: Sequence[str],
                     progress: Progress | None) -> tuple[Encoder, list[str]]:
        """The encoder of an index run, with warnings for its report."""
        runtimes.check(settings.runtime, settings.precision)
        on_gpus = bool(settings.ray) and settings.gpus_per_worker > 0  # a cluster's GPU actors: PyTorch on CUDA
        if not self._own or on_gpus:
            asked = settings.runtime not in (None, Runtime.TORCH) or settings.precision != Precision.FP32
            return self.get(spec), ["a Ray cluster's GPU workers encode with PyTorch: the runtime and precision "
                                    "asked for apply to CPU workers and this machine only"] if on_gpus and asked else []
        from imgsearch.models.sources import resolve_source

        src = resolve_source(spec)
        if src.exported or not runtimes.torch_installed():
            if src.exported and settings.runtime == Runtime.TORCH:
                raise UsageError(f"model {src.name} is an export: it runs on ONNX Runtime or OpenVINO, not PyTorch. "
                                 "Leave out {param:runtime}, or give an open_clip checkpoint as {param:model}.",
                                 "runtime")
            notes = ["int8 is made by quantizing the PyTorch model, and this one runs as exported: encoding in fp32"] \
                if settings.precision == Precision.INT8 else []
            return self.get(spec), notes
        from imgsearch.models.encoder import OpenClipEncoder, default_device
        from imgsearch.models.export import encoder_for_indexing

        def torch_encoder() -> OpenClipEncoder:
            encoder = self.get(spec)
            assert isinstance(encoder, OpenClipEncoder)  # not an export, and PyTorch is installed
            return encoder

        def cpu_encoder() -> OpenClipEncoder:
            encoder = torch_encoder()
            return encoder if encoder.device == "cpu" else OpenClipEncoder.load(spec, device="cpu", precision=Precision.FP32)

        # a CPU cluster's actors run what this machine would on its CPU: the export made (and gated) here, once
        device = "cpu" if settings.ray else default_device()
        chosen, notes = encoder_for_indexing(src.key, device, self.exports_dir, settings.runtime,
                                             settings.precision, [Path(f) for f in folders], progress or SilentProgress(),
                                             torch_encoder, cpu_encoder)
        self._exported.forget(src.key)
        return chosen, notes
