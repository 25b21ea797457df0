"""FAISS wrapper: build from a factory spec, add/remove by image id, search, atomic save and load."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import faiss
import numpy as np

EXACT_SPEC = "IDMap2,Flat"  # exact inner product keyed by image id (cosine on normalised vectors)
GPU_MIN_VECTORS = 50_000  # below this a CPU scan answers faster than a copy to the GPU pays back


def as_float32(x: np.ndarray) -> np.ndarray:
    """The C-contiguous float32 2-D array FAISS insists on."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x.reshape(1, -1) if x.ndim == 1 else x


def gpu_count() -> int:
    """GPUs FAISS can use (0 with faiss-cpu)."""
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


class VectorIndex:
    """An inner-product FAISS index over image ids; `spec` is the factory string it was built from."""

    def __init__(self, index: faiss.Index, spec: str) -> None:
        self.index = index  # the CPU index: what is saved and what add/remove change
        self.spec = spec
        self._gpu_index: faiss.Index | None = None

    @classmethod
    def build(cls, dim: int, ids: np.ndarray, vectors: np.ndarray, spec: str = EXACT_SPEC) -> "VectorIndex":
        """A new index holding these vectors."""
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
        vi = cls(index, spec)
        vi.add(ids, vectors)
        return vi

    @property
    def dim(self) -> int:
        return self.index.d

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(as_float32(vectors), np.ascontiguousarray(ids, dtype=np.int64))
            self._gpu_index = None

    def remove(self, ids: np.ndarray) -> int:
        """Remove these ids; returns how many were present."""
        if not len(ids):
            return 0
        self._gpu_index = None
        return self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n, k); missing neighbours have id -1. Runs on the GPU when FAISS has one."""
        k = max(1, min(k, len(self))) if len(self) else 1
        scores, ids = self._searcher().search(as_float32(queries), k)
        return scores, ids

    def _searcher(self) -> faiss.Index:
        if len(self) < GPU_MIN_VECTORS or gpu_count() == 0:
            return self.index
        if self._gpu_index is None:
            try:
                self._gpu_index = faiss.index_cpu_to_all_gpus(self.index)
            except (RuntimeError, AttributeError):  # an index type without a GPU version
                return self.index
        return self._gpu_index

    def save(self, path: Path) -> None:
        """Write atomically: a temp file in the same folder, fsync, rename. A torn index is impossible."""
        data = faiss.serialize_index(self.index)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data.tobytes())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    @classmethod
    def load(cls, path: Path, spec: str) -> "VectorIndex":
        return cls(faiss.read_index(str(path)), spec)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
