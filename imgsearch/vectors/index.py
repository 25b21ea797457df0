"""FAISS wrapper: exact or IVF-PQ, add/remove by image id, exact re-ranking, atomic save and load.

An IVF-PQ index keeps, next to the PQ codes, an fp16 copy of every vector (an IDMap2 over a
scalar quantizer): candidates are re-scored with it, so every score shown is an exact cosine
(exact up to the fp16 the library stores anyway), and filtered searches can be scored exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, cast

import faiss
import numpy as np

from imgsearch.fs import atomic_write
from imgsearch.vectors import params
from imgsearch.workers import ReadWriteLock, reads, writes

EXACT_SPEC = "IDMap2,Flat"  # exact inner product keyed by image id (cosine on normalised vectors)
GPU_MIN_VECTORS = 50_000  # below this a CPU scan answers faster than a copy to the GPU pays back
FORMAT = 1
PQ_TRAIN = 65_536  # the product quantizer's sample once the centroids are trained (256 points per code word)


def as_float32(x: np.ndarray) -> np.ndarray:
    """The C-contiguous float32 2-D array FAISS insists on."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x.reshape(1, -1) if x.ndim == 1 else x


def as_ids(ids: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(ids, dtype=np.int64)


# An HNSW graph over the IVF centroids (params: from 2^14 lists) visits this many candidates per list probed, at
# least COARSE_EF_MIN: 4x found 97.6-99.9% of the lists a flat scan finds at 2^16-2^17 lists in 0.1-0.4 ms instead of
# 9.5-34 ms (BENCHMARKS.md, "A coarse quantizer that scales").
COARSE_EF_PER_PROBE, COARSE_EF_MIN = 4, 64
# The graph itself: built with efConstruction 200, and a vector is added to the list the graph finds with efSearch
# 64. FAISS's default 16 put vectors in lists other than their nearest often enough to cap recall@10 at 0.95 with
# any nprobe (1M vectors, 2^14 lists: 0.995 with 64, as a flat quantizer's 0.996; adds 2.8x slower than with 16).
COARSE_EF_CONSTRUCTION, COARSE_EF_ADD = 200, 64


def ivf_search_params(ann: Any, nprobe: int) -> tuple[faiss.SearchParametersIVF, Any]:
    """Search parameters for an IVF index (bare or wrapped): its nprobe and, for an HNSW coarse quantizer, its
    efSearch. The second value must be kept alive while the parameters are used (FAISS holds a bare pointer)."""
    params = faiss.SearchParametersIVF()
    params.nprobe = nprobe
    coarse = None
    if isinstance(faiss.downcast_index(faiss.extract_index_ivf(ann).quantizer), faiss.IndexHNSW):
        coarse = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # (missing from the stubs)
        coarse.efSearch = max(COARSE_EF_MIN, COARSE_EF_PER_PROBE * nprobe)
        params.quantizer_params = coarse
    return params, coarse


def gpu_count() -> int:
    """GPUs FAISS can use (0 with faiss-cpu)."""
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


# A faiss.Index or one of its SWIG subclasses. faiss's type stubs do not describe what its Python wrappers accept
# (numpy arrays for ids, keyword arguments, the id_map of IndexIDMap2), so its indexes are not type-checked.
FaissIndex = Any


class VectorIndex(Protocol):
    """What searching, tuning and updating need of an index: in RAM (MemoryIndex: exact, or IVF-PQ with an fp16
    re-rank copy) or on disk (vectors.ondisk.OnDiskIndex: sharded inverted lists)."""

    params: dict  # search-time settings (nprobe, k_factor) and what the build was told
    spec: str  # the FAISS factory string it was built from

    @property
    def kind(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def nlist(self) -> int: ...

    def __len__(self) -> int: ...

    def ids(self) -> np.ndarray: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the best k per query, exact cosines, -1 ids past the end."""
        ...

    def score(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """The exact cosine of each of these ids."""
        ...

    def save(self, path: Path) -> None: ...


class MemoryIndex:
    """Inner-product search over image ids, in RAM; `spec` is the FAISS factory string of the ANN part."""

    def __init__(self, ann: FaissIndex, spec: str, refine: FaissIndex | None = None,
                 params: dict | None = None) -> None:
        self.ann = ann  # the CPU index: what is saved and what add/remove change
        self.refine = refine  # fp16 copy for exact re-ranking (IVF-PQ only)
        self.spec = spec
        self.params = {"nprobe": 1, "k_factor": 10, **(params or {})}
        self._gpu_ann: FaissIndex | None = None
        self._lock = ReadWriteLock()  # updated in place while other threads search it (vectors.build.IndexCache)

    # --- construction ------------------------------------------------------------------------------

    @classmethod
    def build(cls, dim: int, ids: np.ndarray, vectors: np.ndarray, spec: str = EXACT_SPEC,
              train_vectors: np.ndarray | None = None) -> "MemoryIndex":
        """A new index holding these vectors; IVF specs are trained on `train_vectors` (default: all)."""
        ann = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
        refine = None
        if not ann.is_trained:
            train_ivf(ann, as_float32(train_vectors if train_vectors is not None else vectors))
            refine = faiss.IndexIDMap2(faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16,
                                                                  faiss.METRIC_INNER_PRODUCT))
        index = cls(ann, spec, refine)
        index.add(ids, vectors)
        return index

    @property
    def kind(self) -> str:
        return "exact" if self.refine is None else "ivfpq"

    @property
    def dim(self) -> int:
        return self.ann.d

    @property
    def nlist(self) -> int:
        return faiss.extract_index_ivf(self.ann).nlist if self.refine is not None else 0

    def __len__(self) -> int:
        return self.ann.ntotal

    @reads
    def ids(self) -> np.ndarray:
        """Every image id in the index."""
        holder = self.refine if self.refine is not None else self.ann
        return faiss.vector_to_array(holder.id_map).astype(np.int64)

    @writes
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(ids):
            return
        ids, vectors = as_ids(ids), as_float32(vectors)
        self.ann.add_with_ids(vectors, ids)
        if self.refine is not None:
            self.refine.add_with_ids(vectors, ids)
        self._gpu_ann = None

    @writes
    def remove(self, ids: np.ndarray) -> int:
        """Remove these ids; returns how many were present."""
        if not len(ids):
            return 0
        self._gpu_ann = None
        removed = self.ann.remove_ids(as_ids(ids))
        if self.refine is not None:
            self.refine.remove_ids(as_ids(ids))
        return removed

    # --- search ------------------------------------------------------------------------------------

    @reads
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n, k), best first; missing neighbours have id -1 and score -inf."""
        queries, k = as_float32(queries), max(1, k)
        if self.refine is None:
            scores, ids = self._ann().search(queries, min(k, max(1, len(self))))
        else:
            depth = min(len(self), max(k, k * int(self.params["k_factor"])))
            params, _coarse = ivf_search_params(self._ann(), int(self.params["nprobe"]))
            _, candidates = self._ann().search(queries, max(1, depth), params=params)
            scores, ids = self._rerank(queries, candidates, k)
        return _pad(scores, ids, k)

    @reads
    def score(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Exact scores of one query against these ids (all must be in the index)."""
        return self._score(query, ids)

    def _score(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        if not len(ids):
            return np.zeros(0, dtype=np.float32)
        holder = self.refine if self.refine is not None else self.ann
        return holder.reconstruct_batch(as_ids(ids)) @ as_float32(query)[0]

    def _rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_i = np.full((len(queries), k), -1, dtype=np.int64)
        for row, (q, cand) in enumerate(zip(queries, candidates)):
            cand = cand[cand >= 0]
            exact = self._score(q, cand)
            top = np.argsort(-exact, kind="stable")[:k]
            out_s[row, :len(top)], out_i[row, :len(top)] = exact[top], cand[top]
        return out_s, out_i

    def _ann(self) -> FaissIndex:
        if len(self) < GPU_MIN_VECTORS or gpu_count() == 0:
            return self.ann
        if self._gpu_ann is None:
            try:
                self._gpu_ann = faiss.index_cpu_to_all_gpus(self.ann)
            except (RuntimeError, AttributeError):  # an index type without a GPU version
                return self.ann
        return self._gpu_ann

    # --- persistence -------------------------------------------------------------------------------

    @reads
    def save(self, path: Path) -> None:
        """One file (npz of the FAISS blobs + metadata), written atomically: temp file, fsync, rename."""
        parts = {"ann": faiss.serialize_index(self.ann),
                 "meta": np.frombuffer(json.dumps({"format": FORMAT, "spec": self.spec,
                                                   "params": self.params}).encode(), dtype=np.uint8)}
        if self.refine is not None:
            parts["refine"] = faiss.serialize_index(self.refine)
        with atomic_write(path) as f:
            np.savez(f, **cast(dict[str, Any], parts))

    @classmethod
    def load(cls, path: Path) -> "MemoryIndex":
        """Read a saved index; raises ValueError for anything that is not one."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(npz["meta"].tobytes())
                ann = faiss.deserialize_index(npz["ann"])
                refine = faiss.deserialize_index(npz["refine"]) if "refine" in npz.files else None
        except Exception as exc:  # a torn zip, a bad CRC, garbage FAISS: all mean "not an index"
            raise ValueError(f"{path} is not a readable imgsearch index: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} has index format {meta.get('format')}, expected {FORMAT}")
        return cls(ann, meta["spec"], refine, meta["params"])


def train_ivf(ann: FaissIndex, vectors: np.ndarray) -> None:
    """Train an IVF(-PQ) index: on the GPU when FAISS has one (k-means dominates); on a CPU, past TWO_LEVEL_MIN
    lists, by two-level k-means (sqrt(nlist) clusters, then each split in proportion to its points: FAISS's
    contrib, as its billion-scale benchmarks train), whose cost grows with sqrt(nlist) instead of nlist. The
    polysemous codes FAISS trains for IVF-PQ by default are never searched here, so they are not trained."""
    ivf: FaissIndex = faiss.downcast_index(faiss.extract_index_ivf(ann))
    if hasattr(ivf, "do_polysemous_training"):
        ivf.do_polysemous_training = False
    quantizer = faiss.downcast_index(ivf.quantizer)
    if isinstance(quantizer, faiss.IndexHNSW):  # kept in the index file: shards read from it add alike
        quantizer.hnsw.efConstruction, quantizer.hnsw.efSearch = COARSE_EF_CONSTRUCTION, COARSE_EF_ADD
    if gpu_count() > 0:
        try:
            ivf.clustering_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(ann.d))
        except (RuntimeError, AttributeError):
            pass
    elif ivf.nlist >= params.TWO_LEVEL_MIN and not quantizer.ntotal:
        from faiss.contrib.clustering import two_level_clustering

        # spherical, as FAISS's own IVF training is for inner product; the sample is sized for the whole index
        # (params), so a second-level cluster may hold a few points under FAISS's 39 per centroid: no warning
        centroids, _ = two_level_clustering(vectors, int(np.sqrt(ivf.nlist)), ivf.nlist, spherical=True,
                                            min_points_per_centroid=1)
        quantizer.add(as_float32(centroids))  # trained: IVF's own train() goes straight to the codes
        vectors = vectors[:: max(1, len(vectors) // PQ_TRAIN)]
    ann.train(vectors)


def _pad(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if scores.shape[1] >= k:
        return scores[:, :k], ids[:, :k]
    extra = k - scores.shape[1]
    return (np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf),
            np.pad(ids, ((0, 0), (0, extra)), constant_values=-1))
