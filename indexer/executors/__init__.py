"""Where decoding and encoding run, behind one interface the pipeline driver uses.

The driver crawls, plans and writes; an executor turns the paths to encode into batches of
(decoded file, vector) and skipped files. `local` runs on this machine (worker processes, the GPU).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from imgsearch.images.loader import StageTimes
from imgsearch.models.embed import Batch


class Executor(Protocol):
    def embed(self, paths: Sequence[str], times: StageTimes) -> Iterator[Batch]:
        """Every path comes back once, in a batch: decoded with its vector, or skipped with its reason."""
