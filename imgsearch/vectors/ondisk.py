"""An index for libraries past RAM: IVF-PQ with inverted lists on disk, built as autofaiss builds them.

Build: train the IVF-PQ on a sample, write the trained empty index; add the vectors shard by shard (each shard a
copy of the trained index holding its ids, written to its own file: shards run in parallel, as threads here or as
Ray tasks); merge the shards' inverted lists into one `lists.ivfdata` (faiss.contrib.ondisk.merge_ondisk). The
fp16 copy used to re-score candidates exactly is written beside it, sorted by id, and read through a memory map
(or loaded into RAM, as the spec says). Everything sits in one folder, opened with IO_FLAG_ONDISK_SAME_DIR: the
folder can move.

After the build, additions go to a small exact index in RAM searched beside the big one, and removals are
remembered as tombstones; both are folded in by the next rebuild (params.needs_retrain, or DELTA_REBUILD).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np

from imgsearch.fs import atomic_write, c_stdout_silenced, file_fingerprint
from imgsearch.vectors.index import FaissIndex, as_float32, as_ids, ivf_search_params, train_ivf
from imgsearch.workers import ReadWriteLock, pid_alive, reads, writes

FORMAT = 1
DELTA_REBUILD = 0.1  # rebuild once the additions since the build reach this share of the index
TRAINED, POPULATED, LISTS, RERANK, RERANK_IDS, DELTA, META = ("trained.index", "populated.index", "lists.ivfdata",
                                                              "rerank.f16", "rerank_ids.npy", "delta.npz", "meta.json")
Shard = tuple[np.ndarray, np.ndarray]  # (ids, vectors)


def _add_shard(trained_path: str, out_path: str, ids: np.ndarray, vectors: np.ndarray) -> str:
    """One shard: the trained empty index with these vectors added, written to `out_path` (a Ray task, or a
    thread: FAISS releases the GIL while it adds)."""
    index = faiss.read_index(trained_path)
    index.add_with_ids(as_float32(vectors), as_ids(ids))
    faiss.write_index(index, out_path)
    return out_path


def build(folder: Path, dim: int, factory: str, train_vectors: np.ndarray, shards: Iterable[Shard], total: int,
          rerank_in_ram: bool = True, params: dict | None = None) -> "OnDiskIndex":
    """Build into `folder` (made empty first) from `total` vectors arriving in shards with ascending ids (a later
    shard's ids above an earlier one's), as a database streams them: shard files are written by a thread per core
    as the shards arrive, a bounded number held at a time."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    trained = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    train_ivf(trained, as_float32(train_vectors))
    faiss.write_index(trained, str(folder / TRAINED))
    rerank = np.lib.format.open_memmap(folder / RERANK, mode="w+", dtype=np.float16, shape=(total, dim))
    rerank_ids = np.lib.format.open_memmap(folder / RERANK_IDS, mode="w+", dtype=np.int64, shape=(total,))
    written, at = [], 0
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for n, (ids, vectors) in enumerate(shards):
            ids = as_ids(ids)
            if at and len(ids) and ids[0] <= rerank_ids[at - 1]:
                raise ValueError("shards must come in ascending id order")
            rerank[at:at + len(ids)], rerank_ids[at:at + len(ids)] = np.asarray(vectors, np.float16), ids
            at += len(ids)
            path = str(folder / f"shard-{n:05d}.index")
            written.append(pool.submit(_add_shard, str(folder / TRAINED), path, ids, vectors))
            while sum(not f.done() for f in written) > 2 * (os.cpu_count() or 1):  # bounded memory
                next(f for f in written if not f.done()).result()
        paths = [f.result() for f in written]
    if at != total:
        raise ValueError(f"{at} vectors arrived, {total} were announced")
    rerank.flush()
    rerank_ids.flush()
    del rerank, rerank_ids
    index = faiss.read_index(str(folder / TRAINED))
    from faiss.contrib.ondisk import merge_ondisk

    with c_stdout_silenced():
        merge_ondisk(index, paths, str(folder / LISTS))
    faiss.write_index(index, str(folder / POPULATED))
    for path in paths:
        os.unlink(path)
    with atomic_write(folder / META, "w") as f:
        f.write(json.dumps({"format": FORMAT, "factory": factory, "rerank_in_ram": rerank_in_ram,
                            "params": {"nprobe": 16, "k_factor": 10, **(params or {})},
                            "files": {name: file_fingerprint(folder / name) for name in CHECKED}}))
    return OnDiskIndex.open(folder)


def build_into_place(folder: Path, dim: int, factory: str, train_vectors: np.ndarray, shards: Iterable[Shard],
                     total: int, rerank_in_ram: bool = True, params: dict | None = None) -> "OnDiskIndex":
    """`build`, into a folder of this process's own beside `folder`, which then takes `folder`'s place: a build
    never writes into a folder another process searches or builds (a server rebuilding beside its searches, an
    indexer), and one killed midway leaves its own folder, removed by the next build here."""
    _remove_killed_builds(folder)  # before (their disk) and after (those killed meanwhile)
    own = folder.parent / f".{folder.name}.building-{os.getpid()}-{threading.get_ident()}"
    try:
        build(own, dim, factory, train_vectors, shards, total, rerank_in_ram, params)
        if folder.exists():  # the same state built by another process meanwhile: replaced (files unlinked, never
            shutil.rmtree(folder)  # truncated, so whoever has them open reads on)
        os.rename(own, folder)
    finally:
        shutil.rmtree(own, ignore_errors=True)
        _remove_killed_builds(folder)
    return OnDiskIndex.open(folder)


def _remove_killed_builds(folder: Path) -> None:
    """The build folders of the same model left by processes that no longer run."""
    for stale in folder.parent.glob(f".{folder.name.split('-gen-')[0]}-gen-*.building-*"):
        pid = stale.name.rsplit("-", 2)[-2]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


CHECKED = (POPULATED, LISTS, RERANK, RERANK_IDS)  # the built files, checked on every open
def _verify(folder: Path, meta: dict) -> None:
    """ValueError naming the first built file that is not as the build wrote it (folders from before checks were
    recorded are taken as they are)."""
    for name, expected in meta.get("files", {}).items():
        if file_fingerprint(folder / name) != expected:
            raise ValueError(f"{name} is damaged (its size or content changed since the build)")


class OnDiskIndex:
    """The VectorIndex interface (search, score, ids, add, remove, len) over a built folder, plus the in-RAM
    additions and tombstones since the build."""

    def __init__(self, folder: Path, ann: FaissIndex, rerank: np.ndarray, rerank_ids: np.ndarray, meta: dict,
                 delta: FaissIndex, removed: set[int]) -> None:
        self.folder, self.ann, self.meta = folder, ann, meta
        self.rerank, self.rerank_ids = rerank, rerank_ids
        self.delta, self.removed = delta, removed  # additions (exact, in RAM) and tombstones since the build
        self.spec = meta["factory"]
        self.params = meta["params"]
        self.refine = None  # (VectorIndex's re-rank copy; here the memory map does that job)
        self._lock = ReadWriteLock()  # the delta and tombstones change in place while other threads search

    @classmethod
    def open(cls, folder: Path) -> "OnDiskIndex":
        """Open a built folder (wherever it has moved to); ValueError when it is not one."""
        try:
            meta = json.loads((folder / META).read_text())
            _verify(folder, meta)
            with c_stdout_silenced():
                ann = faiss.read_index(str(folder / POPULATED), faiss.IO_FLAG_ONDISK_SAME_DIR)
            rerank = np.load(folder / RERANK, mmap_mode=None if meta["rerank_in_ram"] else "r")
            rerank_ids = np.load(folder / RERANK_IDS)
            delta, removed, params = _load_delta(folder / DELTA, ann.d)
        except Exception as exc:  # missing, torn or foreign: "not an index"
            raise ValueError(f"{folder} is not a readable on-disk imgsearch index: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder} has on-disk index format {meta.get('format')}, expected {FORMAT}")
        if params is not None:
            meta["params"] = params  # tuned after the build
        return cls(folder, ann, rerank, rerank_ids, meta, delta, removed)

    # --- the VectorIndex interface -------------------------------------------------------------------

    kind = "ondisk"

    @property
    def dim(self) -> int:
        return self.ann.d

    @property
    def nlist(self) -> int:
        return faiss.extract_index_ivf(self.ann).nlist

    def __len__(self) -> int:
        # tombstones are only ever ids of the built part (add and remove check _in_base), so they count as they are
        return int(self.ann.ntotal) - len(self.removed) + int(self.delta.ntotal)

    @reads
    def ids(self) -> np.ndarray:
        base = self.rerank_ids[~np.isin(self.rerank_ids, np.fromiter(self.removed, np.int64))]
        return np.union1d(base, faiss.vector_to_array(self.delta.id_map).astype(np.int64))

    @writes
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """New or changed vectors go to the in-RAM delta (a changed one's old copy is tombstoned)."""
        if len(ids):
            self.removed.update(int(i) for i in ids if self._in_base(int(i)))
            self.delta.remove_ids(as_ids(ids))
            self.delta.add_with_ids(as_float32(vectors), as_ids(ids))

    @writes
    def remove(self, ids: np.ndarray) -> int:
        if not len(ids):
            return 0
        gone = int(self.delta.remove_ids(as_ids(ids)))
        base = [int(i) for i in ids if self._in_base(int(i)) and int(i) not in self.removed]
        self.removed.update(base)
        return gone + len(base)

    def needs_rebuild(self) -> bool:
        return self.delta.ntotal + len(self.removed) > DELTA_REBUILD * max(1, self.ann.ntotal)

    @reads
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), best first: IVF candidates re-scored exactly from the fp16 copy, merged with the delta."""
        queries = as_float32(queries)
        k = max(1, k)
        depth = max(k, k * int(self.params["k_factor"])) + len(self.removed)
        params, _coarse = ivf_search_params(self.ann, int(self.params["nprobe"]))
        _, candidates = self.ann.search(queries, min(depth, max(1, int(self.ann.ntotal))), params=params)
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_i = np.full((len(queries), k), -1, dtype=np.int64)
        removed = np.fromiter(self.removed, np.int64)
        for row, (q, cand) in enumerate(zip(queries, candidates)):
            cand = cand[(cand >= 0) & ~np.isin(cand, removed)]
            scores = self._base_scores(q, cand)
            if self.delta.ntotal:
                d_scores, d_ids = self.delta.search(q[None], min(k, int(self.delta.ntotal)))
                cand = np.concatenate([cand, d_ids[0][d_ids[0] >= 0]])
                scores = np.concatenate([scores, d_scores[0][d_ids[0] >= 0]])
            top = np.argsort(-scores, kind="stable")[:k]
            out_s[row, :len(top)], out_i[row, :len(top)] = scores[top], cand[top]
        return out_s, out_i

    @reads
    def score(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Exact scores of one query against these ids (all in the index)."""
        ids = as_ids(ids)
        q = as_float32(query)[0]
        out = np.empty(len(ids), dtype=np.float32)
        in_delta = np.isin(ids, faiss.vector_to_array(self.delta.id_map)) if self.delta.ntotal else np.zeros(len(ids), bool)
        if in_delta.any():
            out[in_delta] = self.delta.reconstruct_batch(ids[in_delta]) @ q
        out[~in_delta] = self._base_scores(q, ids[~in_delta])
        return out

    def _base_scores(self, q: np.ndarray, ids: np.ndarray) -> np.ndarray:
        rows = np.searchsorted(self.rerank_ids, ids)
        order = np.argsort(rows)  # read the memory map in file order
        scores = np.empty(len(ids), dtype=np.float32)
        scores[order] = self.rerank[rows[order]].astype(np.float32) @ q
        return scores

    def _in_base(self, image_id: int) -> bool:
        at = int(np.searchsorted(self.rerank_ids, image_id))
        return at < len(self.rerank_ids) and int(self.rerank_ids[at]) == image_id

    # --- persistence ---------------------------------------------------------------------------------

    @reads
    def save(self, folder: Path) -> None:
        """This state in `folder`: the built files hard-linked (or copied across file systems) when `folder` is a
        new one, and the delta and tombstones written."""
        if folder != self.folder:
            folder.mkdir(parents=True, exist_ok=True)
            for name in (POPULATED, LISTS, RERANK, RERANK_IDS, META, TRAINED):
                if (self.folder / name).exists() and not (folder / name).exists():
                    try:
                        os.link(self.folder / name, folder / name)
                    except OSError:
                        shutil.copy2(self.folder / name, folder / name)
        ids = faiss.vector_to_array(self.delta.id_map).astype(np.int64)
        with atomic_write(folder / DELTA) as f:
            np.savez(f, ids=ids, vectors=self.delta.reconstruct_batch(ids) if len(ids) else np.zeros((0, self.dim)),
                     removed=np.fromiter(self.removed, np.int64), params=np.frombuffer(
                         json.dumps(self.params).encode(), dtype=np.uint8))

    def ram_bytes(self) -> int:
        """What this index holds in RAM: the ids' map, the re-rank copy unless memory-mapped, the delta."""
        copy = self.rerank.nbytes if self.meta["rerank_in_ram"] else 0
        return self.rerank_ids.nbytes + copy + int(self.delta.ntotal) * (4 * self.dim + 16)

    def disk_bytes(self) -> int:
        return folder_bytes(self.folder)


def folder_bytes(folder: Path) -> int:
    """Disk taken by a built folder (its files: lists, re-rank copy, trained index, delta)."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _load_delta(path: Path, dim: int) -> tuple[FaissIndex, set[int], dict | None]:
    """The additions, tombstones and search parameters saved since the build (none yet: empty, None)."""
    delta = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if not path.exists():
        return delta, set(), None
    with np.load(path) as npz:
        if len(npz["ids"]):
            delta.add_with_ids(as_float32(npz["vectors"]), as_ids(npz["ids"]))
        return delta, set(int(i) for i in npz["removed"]), json.loads(npz["params"].tobytes())


def shards_of(ids: np.ndarray, vectors: np.ndarray, n: int) -> list[Shard]:
    """`n` roughly equal shards of in-memory data (the benchmark's and tests' way in; a library streams its own)."""
    bounds = np.linspace(0, len(ids), n + 1).astype(int)
    return [(ids[a:b], vectors[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

