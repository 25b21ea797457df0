"""The vector index at scale: spec choice (grid), IVF-PQ recall vs exact, exact scores, incremental updates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgsearch import store
from imgsearch.vectors.index import MemoryIndex
from imgsearch.vectors import build as index_build
from imgsearch.vectors import params
from imgsearch.vectors.tuning import exact_top_k, recall_at_k, sample_queries, tune
from imgsearch.vectors.params import IndexSpec, choose_index_spec, needs_retrain
from indexer.pipeline import model_record
from tests.factories import FakeEncoder


def clustered(n: int, dim: int, clusters: int = 50, seed: int = 0) -> np.ndarray:
    """Unit vectors around random centres: the shape of real embedding sets, unlike uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + rng.normal(scale=0.6, size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# --- choose_index_spec: pure, grid-tested -------------------------------------------------------------

SIZES = [0, 1, 100, 623, 624, 10_000, 50_000, 50_001, 100_000, 1_000_000, 9_999_999, 10_000_000, 100_000_000,
         1_000_000_000]


@pytest.mark.parametrize("dim", [32, 512, 768, 1024])
def test_spec_grid(dim: int) -> None:
    previous_nlist = 0
    for n in SIZES:
        spec = choose_index_spec(n, dim)
        if n <= params.EXACT_MAX:
            assert spec.kind == "exact" and spec.factory == "IDMap2,Flat", n
            continue
        floor = params.MIN_POINTS_PER_LIST * spec.nlist  # never train below ~39 points per list
        assert spec.nlist & (spec.nlist - 1) == 0 and n >= floor
        assert spec.nlist >= previous_nlist  # grows with the library
        previous_nlist = spec.nlist
        if n < params.ONDISK_MIN:
            assert spec.kind == "ivfpq" and spec.factory == f"{params.coarse(spec.nlist)},PQ{spec.m}x4fs"
            assert params.MIN_NLIST <= spec.nlist <= params.MAX_NLIST
            assert floor <= spec.train_size <= min(n, max(params.MAX_TRAIN, floor))
            assert dim % spec.m == 0 and spec.m % 2 == 0
        else:  # 10M-1B: lists on disk, 8-bit PQ (mergeable), 2^16-2^18 lists
            assert spec.kind == "ondisk" and spec.factory == f"IVF{spec.nlist}_HNSW32,PQ{spec.m}" and spec.rerank == "ram"
            assert params.ONDISK_NLIST[0] <= spec.nlist <= params.ONDISK_NLIST[1] and spec.m == dim // 8
            assert floor <= spec.train_size <= max(params.ONDISK_TRAIN, floor)
    assert choose_index_spec(1_000_000_000, 512).nlist == 1 << 18


def test_many_lists_get_an_hnsw_coarse_quantizer() -> None:
    """Past 2^14 lists a flat scan of the centroids is most of a query's time: the centroids go into an HNSW graph."""
    assert choose_index_spec(1_000_000, 512).factory == "IVF4096,PQ128x4fs"
    assert choose_index_spec(9_999_999, 512).factory == "IVF16384_HNSW32,PQ128x4fs"
    assert choose_index_spec(10_000_000, 512).factory == "IVF65536_HNSW32,PQ64"
    assert choose_index_spec(2_000_000, 512, memory_budget_bytes=500 * 10**6).factory.startswith("IVF32768_HNSW32,")


def test_ondisk_bytes_and_a_memory_budget_that_moves_the_rerank_copy_to_disk() -> None:
    spec = choose_index_spec(100_000_000, 512)
    assert (spec.bytes_per_vector(512), spec.disk_bytes_per_vector(512)) == (8 + 1024, 64 + 8 + 1024 + 8)
    tight = choose_index_spec(100_000_000, 512, memory_budget_bytes=50 * 10**9)  # 500 B/vector: the copy cannot stay
    assert tight.kind == "ondisk" and tight.rerank == "mmap" and tight.bytes_per_vector(512) == 8
    early = choose_index_spec(2_000_000, 512, memory_budget_bytes=500 * 10**6)  # in-RAM IVF-PQ would need ~2.2 GB
    assert early.kind == "ondisk" and early.nlist < params.ONDISK_NLIST[0]  # few vectors: fewer lists
    assert 2_000_000 >= params.MIN_POINTS_PER_LIST * early.nlist


def test_ivfpq_memory_per_vector_fits_the_budget_at_512d() -> None:
    spec = choose_index_spec(1_000_000, 512)
    assert spec.bytes_per_vector(512) <= 1200
    assert spec.bytes_per_vector(512) < choose_index_spec(1000, 512).bytes_per_vector(512)


def test_memory_budget_switches_to_ivf_early_but_never_untrainably() -> None:
    exact_bytes = IndexSpec("exact", "IDMap2,Flat").bytes_per_vector(512)
    assert choose_index_spec(20_000, 512, memory_budget_bytes=20_000 * exact_bytes * 6 // 10).kind == "ivfpq"
    assert choose_index_spec(20_000, 512, memory_budget_bytes=20_000 * exact_bytes * 2).kind == "exact"
    assert choose_index_spec(500, 512, memory_budget_bytes=1).kind == "exact"  # too few to train


def test_needs_retrain_on_growth_and_kind_change() -> None:
    assert not needs_retrain("exact", 100, 40_000, 512)
    assert needs_retrain("exact", 100, 60_000, 512)  # outgrew exact search
    assert not needs_retrain("ivfpq", 100_000, 399_999, 512)
    assert needs_retrain("ivfpq", 100_000, 400_001, 512)  # 4x the training size
    assert needs_retrain("ivfpq", 100_000, 20_000, 512)  # shrank below the exact threshold


# --- IVF-PQ against exact search ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    vectors = clustered(6000, 64)
    return np.arange(10, 6010, dtype=np.int64), vectors


@pytest.fixture(scope="module")
def ivf(data: tuple[np.ndarray, np.ndarray]) -> MemoryIndex:
    ids, vectors = data
    return MemoryIndex.build(64, ids, vectors, "IVF64,PQ16x4fs")


def test_tuning_reaches_target_recall_and_recall_grows_with_nprobe(ivf: MemoryIndex, data) -> None:
    ids, vectors = data
    queries = sample_queries(vectors, 100, seed=1)
    truth = exact_top_k(ids, vectors, queries, 10)
    recalls = []
    for nprobe in (1, 4, 16, 64):
        ivf.params.update(nprobe=nprobe, k_factor=10)
        recalls.append(recall_at_k(ivf, truth, queries))
    assert all(b >= a - 0.02 for a, b in zip(recalls, recalls[1:]))  # monotone trend, up to noise
    assert recalls[-1] > recalls[0] + 0.1
    measured = tune(ivf, ids, vectors, target=0.95)
    assert measured >= 0.95 and ivf.params["nprobe"] < 64
    assert recall_at_k(ivf, truth, queries) >= 0.93  # holds on other queries than the tuning sample


def test_scores_are_exact_cosines(ivf: MemoryIndex, data) -> None:
    ids, vectors = data
    q = sample_queries(vectors, 1, seed=5)
    scores, found = ivf.search(q, 10)
    by_id = dict(zip(ids.tolist(), vectors))
    expected = np.array([by_id[i] @ q[0] for i in found[0]])
    np.testing.assert_allclose(scores[0], expected, atol=2e-3)  # fp16 re-rank copy
    assert list(scores[0]) == sorted(scores[0], reverse=True)


def test_remove_add_save_load(tmp_path: Path, data) -> None:
    ids, vectors = data
    index = MemoryIndex.build(64, ids[:3000], vectors[:3000], "IVF32,PQ16x4fs")
    index.params.update(nprobe=32)
    assert index.remove(ids[:10]) == 10 and len(index) == 2990
    index.add(ids[3000:3010], vectors[3000:3010])
    index.save(tmp_path / "x.faiss")
    loaded = MemoryIndex.load(tmp_path / "x.faiss")
    assert loaded.kind == "ivfpq" and loaded.params["nprobe"] == 32 and len(loaded) == 3000
    assert set(loaded.ids().tolist()) == set(ids[10:3010].tolist())
    _, found = loaded.search(vectors[3005], 1)
    assert found[0, 0] == ids[3005]
    (tmp_path / "bad.faiss").write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a readable imgsearch index"):
        MemoryIndex.load(tmp_path / "bad.faiss")


# --- incremental index updates in a library -----------------------------------------------------------

def populate(library, vectors: np.ndarray, start: int = 0) -> list[int]:
    with library.sessions.begin() as session:
        model_id = store.get_or_create_model(session, model_record(FakeEncoder("fake", vectors.shape[1]).info)).id
        items = [(store.ImageRecord(f"/lib/{start + n}.jpg", 1, 1, f"h{start + n}", 64, 48, "JPEG"), None)
                 for n in range(len(vectors))]
        ids, _ = store.save_images(session, items)
        store.save_vectors(session, model_id, ids, vectors)
    return ids


def latest(library):
    with library.session() as session:
        model = store.list_models(session)[0]
        return model.id, store.latest_build(session, model.id)


def test_library_index_updates_incrementally_and_retrains_when_outgrown(library, monkeypatch) -> None:
    monkeypatch.setattr(params, "EXACT_MAX", 500)
    vectors = clustered(1500, 32, seed=3)
    populate(library, vectors[:1000])
    model_id, _ = latest(library)
    _, index = index_build.ensure_index(library.sessions, model_id, library.index_dir)
    _, first = latest(library)
    assert index.kind == "ivfpq" and first.trained_count == 1000 and first.recall_at_10 >= 0.95
    assert [m.index_params for m in library.status().models][0]["nprobe"] == index.params["nprobe"]

    new_ids = populate(library, vectors[1000:1100], start=1000)  # added without retraining
    _, index = index_build.ensure_index(library.sessions, model_id, library.index_dir)
    _, second = latest(library)
    assert len(index) == 1100 and second.trained_count == 1000 and second.spec == first.spec
    assert index.search(vectors[1050], 1)[1][0, 0] == new_ids[50]

    with library.sessions.begin() as session:  # a changed file keeps its id, gets a new vector
        store.save_vectors(session, model_id, [new_ids[0]], vectors[1400:1401])
        store.delete_images(session, new_ids[1:11])
        store.bump_generation(session)
    _, index = index_build.ensure_index(library.sessions, model_id, library.index_dir)
    assert len(index) == 1090 and not set(new_ids[1:11]) & set(index.ids().tolist())
    assert index.search(vectors[1400], 1)[1][0, 0] == new_ids[0]
    assert [p.name for p in library.index_dir.iterdir()] == [latest(library)[1].filename]  # old files pruned

    populate(library, clustered(4000, 32, seed=4), start=2000)  # > 4x the training size: retrain
    index_build.ensure_index(library.sessions, model_id, library.index_dir)
    assert latest(library)[1].trained_count == 5090
    index_build.ensure_index(library.sessions, model_id, library.index_dir, rebuild=True)
    assert latest(library)[1].id != 0 and latest(library)[1].trained_count == 5090


def test_searches_follow_a_growing_library_in_memory_while_they_run(library, monkeypatch) -> None:
    """While an indexer commits batch after batch, each search first adds the new batch to the index it holds, in
    place (read from the vectors written since: no file is read or written per batch), and searches running beside
    that update in other threads never fail or see a half-added batch; deletions are still found."""
    import threading

    from imgsearch.config import SearchOptions
    from imgsearch.search.query import Term

    monkeypatch.setattr(params, "EXACT_MAX", 500)
    vectors = clustered(3000, 32, seed=5)
    populate(library, vectors[:1000])
    cache = index_build.IndexCache(library.sessions, library.index_dir)
    model_id, _ = latest(library)
    held = cache.get(model_id)
    _, saved = latest(library)
    loads: list[object] = []
    real_load = index_build._load
    monkeypatch.setattr(index_build, "_load", lambda *a: loads.append(a) or real_load(*a))
    failures: list[BaseException] = []
    stop = threading.Event()

    def search_on() -> None:  # another request's thread, on whatever index the cache holds
        while not stop.is_set():
            try:
                scores, ids = cache.get(model_id).search(vectors[:4], 5)
                assert (ids >= 0).all() and np.isfinite(scores).all()
            except BaseException as exc:  # reported below
                failures.append(exc)
                return

    searcher = threading.Thread(target=search_on)
    searcher.start()
    try:
        for batch in range(10):  # an indexer's commits
            start = 1000 + 100 * batch
            new_ids = populate(library, vectors[start:start + 100], start=start)
            index = cache.get(model_id)
            assert index is held and len(index) == start + 100  # the same index, grown in place
            assert index.search(vectors[start + 42], 1)[1][0, 0] == new_ids[42]
    finally:
        stop.set()
        searcher.join()
    assert not failures, failures[0]
    assert loads == [] and latest(library)[1].id == saved.id  # nothing read or written per batch
    with library.sessions.begin() as session:  # a deletion: the slow path compares every id
        store.delete_images(session, new_ids[:5])
        store.bump_generation(session)
    assert not set(new_ids[:5]) & set(cache.get(model_id).ids().tolist())
    hits = library.search([Term(1.0, "vector", "v", vectors[1950])], SearchOptions(k=1))
    assert hits[0].id == new_ids[50]


def test_a_rebuild_runs_beside_the_searches_which_never_wait_for_it(library, monkeypatch) -> None:
    """In a server (Library.rebuild_beside_searches, which create_app calls): when the library outgrows its index (here an exact index past EXACT_MAX: IVF-PQ is due), a search answers at
    once from the index it holds, grown in place, while the rebuild runs in a thread of its own; the rebuilt index
    then takes its place and the next search adds what came meanwhile. The rebuild is held back here until the
    searches are done: were they waiting for it, the first would never return (it gives up after a minute)."""
    import threading

    monkeypatch.setattr(params, "EXACT_MAX", 500)
    vectors = clustered(2400, 32, seed=6)
    populate(library, vectors[:400])
    cache = index_build.IndexCache(library.sessions, library.index_dir, rebuild_beside=True)  # as a server's is
    model_id, _ = latest(library)
    assert cache.get(model_id).kind == "exact"
    release, building = threading.Event(), threading.Event()
    real_build = index_build._build

    def held_back(*args, **kwargs):  # the real build, once the test lets it start
        building.set()
        if not release.wait(60):
            raise TimeoutError("the test never released the rebuild")
        return real_build(*args, **kwargs)

    monkeypatch.setattr(index_build, "_build", held_back)
    grown = populate(library, vectors[400:2000], start=400)  # 4x past what the exact index was built for
    index = cache.get(model_id)  # returns while the rebuild is held back
    assert building.wait(60) and index.kind == "exact" and len(index) == 2000
    assert index.search(vectors[1500], 1)[1][0, 0] == grown[1100]
    release.set()
    assert cache.rebuilt.wait(120)
    late = populate(library, vectors[2000:2100], start=2000)  # committed after the rebuild read the vectors
    index = cache.get(model_id)
    assert index.kind == "ivfpq" and len(index) == 2100 and index.params["trained_count"] == 2000
    assert index.search(vectors[2050], 1)[1][0, 0] == late[50]


def test_an_on_disk_index_is_rebuilt_beside_the_searches_too(library, monkeypatch) -> None:
    """The same for a library past its memory budget (inverted lists on disk): additions past ondisk.DELTA_REBUILD
    are searched from the in-RAM delta at once while the new folder is built beside (into a folder of its own,
    renamed into place), then the new folder takes the old one's place, which goes."""
    import subprocess
    import threading

    from imgsearch.vectors import ondisk

    vectors = clustered(2600, 32, seed=8)
    populate(library, vectors[:2000])
    model_id, _ = latest(library)
    index_build.ensure_index(library.sessions, model_id, library.index_dir, memory_budget=1000)  # nothing fits
    cache = index_build.IndexCache(library.sessions, library.index_dir, rebuild_beside=True)
    first = cache.get(model_id)
    assert first.kind == "ondisk" and not first.needs_rebuild()
    old_folder = first.folder
    release, building = threading.Event(), threading.Event()
    real_build = ondisk.build

    def held_back(folder, *args, **kwargs):
        building.set()
        assert folder.name.startswith(".") and ".building-" in folder.name  # never the folder searched
        if not release.wait(60):
            raise TimeoutError("the test never released the rebuild")
        return real_build(folder, *args, **kwargs)

    monkeypatch.setattr(ondisk, "build", held_back)
    grown = populate(library, vectors[2000:2500], start=2000)  # 25% more: past DELTA_REBUILD
    index = cache.get(model_id)  # returns while the rebuild is held back
    assert building.wait(60) and index is first and len(index) == 2500 and index.needs_rebuild()
    assert index.search(vectors[2300], 1)[1][0, 0] == grown[300]
    dead = subprocess.Popen(["true"])
    dead.wait()
    killed = library.index_dir / f".{old_folder.name}.building-{dead.pid}-1"  # a build killed midway
    (killed / "shard-00000.index").parent.mkdir()
    (killed / "shard-00000.index").write_bytes(b"partial")
    release.set()
    assert cache.rebuilt.wait(120)
    late = populate(library, vectors[2500:2510], start=2500)
    index = cache.get(model_id)
    assert index.kind == "ondisk" and index is not first and len(index) == 2510 and not index.needs_rebuild()
    assert index.search(vectors[2505], 1)[1][0, 0] == late[5]
    assert not old_folder.exists() and not list(library.index_dir.glob(".*building*"))
    assert [p for p in library.index_dir.iterdir() if p.is_dir()] == [index.folder]


def test_only_a_server_rebuilds_beside_its_searches(library) -> None:
    """A one-off search would exit before a rebuild in a thread ended: only the web app asks for it."""
    from imgsearch.web.app import create_app
    from imgsearch.web.security import Guard

    assert not library._indexes.rebuild_beside
    create_app(library, Guard(port=8765))
    assert library._indexes.rebuild_beside
