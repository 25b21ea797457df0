"""Incremental indexing through the Library API with the fake encoder: what is encoded, moved, removed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from imgsearch.config import CrawlSettings, IndexSettings, ModelSpec
from imgsearch.errors import ImgSearchError, NothingIndexedError, UsageError
from tests.factories import write_photo

INLINE = IndexSettings(workers=0)
FAKE = ModelSpec("fake", None)


def make_tree(root: Path) -> dict[str, Path]:
    return {
        "red": write_photo(root / "a" / "red.jpg", "red", seed=1),
        "green": write_photo(root / "a" / "green.png", "green", seed=2),
        "blue": write_photo(root / "b" / "blue.JPG", "blue", seed=3),
        "yellow": write_photo(root / "b" / "deep" / "yellow.webp", "yellow", seed=4),
    }


def index(library, root: Path, settings: IndexSettings = INLINE, spec: ModelSpec = FAKE):
    return library.index([root], spec, settings)


def test_first_run_indexes_everything_and_search_ranks_by_colour(library, fake_encoders, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "pics")
    report = index(library, tmp_path / "pics")
    assert (report.new, report.changed, report.moved, report.unchanged, report.removed, report.skipped) == (4, 0, 0, 0, 0, 0)
    assert report.encoded == 4 and report.indexed_total == 4
    assert fake_encoders["fake"].images_encoded == 4
    for colour, path in files.items():
        hits = library.search_text(f"something {colour}", k=4)
        assert hits[0].path == str(path)
        assert [h.rank for h in hits] == [1, 2, 3, 4]
        assert hits[0].score > hits[1].score
        assert 0.99 < hits[0].score <= 1.0001


def test_unchanged_rerun_encodes_nothing(library, fake_encoders, tmp_path: Path) -> None:
    make_tree(tmp_path / "pics")
    index(library, tmp_path / "pics")
    report = index(library, tmp_path / "pics")
    assert (report.new, report.unchanged, report.encoded) == (0, 4, 0)
    assert fake_encoders["fake"].images_encoded == 4


def test_modified_file_is_reencoded_and_search_follows(library, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "pics")
    index(library, tmp_path / "pics")
    write_photo(files["red"], "black", seed=9)
    os.utime(files["red"], ns=(1, 1_000_000_000))  # a different mtime whatever the clock resolution
    report = index(library, tmp_path / "pics")
    assert (report.changed, report.unchanged, report.encoded) == (1, 3, 1)
    assert library.search_text("black", k=1)[0].path == str(files["red"])
    assert library.search_text("red", k=1)[0].path != str(files["red"])


def test_rename_and_move_across_folders_reuse_vectors(library, fake_encoders, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "pics")
    index(library, tmp_path / "pics")
    renamed = files["red"].with_name("renamed.jpg")
    files["red"].rename(renamed)
    moved = tmp_path / "pics" / "c" / "moved.webp"
    moved.parent.mkdir()
    shutil.move(files["yellow"], moved)
    report = index(library, tmp_path / "pics")
    assert (report.moved, report.new, report.removed, report.encoded) == (2, 0, 0, 0)
    assert fake_encoders["fake"].images_encoded == 4
    assert library.search_text("red", k=1)[0].path == str(renamed)
    assert library.search_text("yellow", k=1)[0].path == str(moved)


def test_deleted_file_leaves_db_and_results(library, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "pics")
    index(library, tmp_path / "pics")
    files["blue"].unlink()
    report = index(library, tmp_path / "pics")
    assert (report.removed, report.indexed_total) == (1, 3)
    paths = [h.path for h in library.search_text("blue", k=10)]
    assert str(files["blue"]) not in paths and len(paths) == 3


def test_copy_of_a_file_is_new_not_moved(library, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "pics")
    index(library, tmp_path / "pics")
    shutil.copy2(files["green"], tmp_path / "pics" / "copy.png")
    report = index(library, tmp_path / "pics")
    assert (report.new, report.moved, report.unchanged) == (1, 0, 4)


def test_bad_files_are_skipped_listed_and_retried_only_when_changed(library, fake_encoders, tmp_path: Path) -> None:
    root = tmp_path / "pics"
    make_tree(root)
    bad = root / "broken.jpg"
    bad.write_bytes(b"<html>404 not found</html>")
    (root / "empty.png").write_bytes(b"")
    report = index(library, root)
    assert (report.new, report.skipped) == (4, 2)
    reasons = dict(library.skipped())
    assert set(reasons) == {str(bad), str(root / "empty.png")}
    assert "not an image" in reasons[str(bad)]
    assert "empty file" in reasons[str(root / "empty.png")]
    again = index(library, root)
    assert (again.skipped, again.encoded, again.skipped_now) == (2, 0, [])
    write_photo(bad, "white", fmt="JPEG", seed=5)
    fixed = index(library, root)
    assert (fixed.new, fixed.encoded, fixed.skipped) == (0, 1, 1)
    assert library.search_text("white", k=1)[0].path == str(bad)
    assert dict(library.skipped()) == {str(root / "empty.png"): reasons[str(root / "empty.png")]}


def test_second_model_keeps_first_models_vectors(library, fake_encoders, tmp_path: Path) -> None:
    make_tree(tmp_path / "pics")
    index(library, tmp_path / "pics", spec=ModelSpec("fake", None))
    report = index(library, tmp_path / "pics", spec=ModelSpec("other", None))
    assert (report.unchanged, report.encoded) == (4, 4)
    assert fake_encoders["other"].images_encoded == 4
    st = library.status()
    assert sorted((m.name, m.vectors) for m in st.models) == [("fake", 4), ("other", 4)]
    assert len(library.search_text("red", k=10, model=ModelSpec("fake", None))) == 4
    # without --model the most recently indexed model answers
    assert library._model_row(None).name == "other"


def test_index_file_missing_or_stale_is_rebuilt_from_db(library, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "pics")
    index(library, tmp_path / "pics")
    for f in library.index_dir.iterdir():
        f.write_bytes(b"garbage")  # a torn or foreign file must never be trusted
    assert library.search_text("green", k=1)[0].path == str(files["green"])
    assert all(m.index_fresh for m in library.status().models)
    for f in library.index_dir.iterdir():
        f.unlink()
    assert library.search_text("blue", k=1)[0].path == str(files["blue"])


def test_rerun_without_folders_uses_known_roots_and_keeps_unreachable_ones(library, tmp_path: Path) -> None:
    make_tree(tmp_path / "one")
    make_tree(tmp_path / "two")
    index(library, tmp_path / "one")
    index(library, tmp_path / "two")
    shutil.move(tmp_path / "two", tmp_path / "unplugged")
    report = library.index((), FAKE, INLINE)
    assert report.removed == 0 and report.unchanged == 4
    assert any("not reachable" in w and str(tmp_path / "two") in w for w in report.warnings)
    assert report.indexed_total == 8


def test_excludes_and_hidden_files(library, tmp_path: Path) -> None:
    root = tmp_path / "pics"
    make_tree(root)
    write_photo(root / ".hidden" / "h.jpg", "white")
    write_photo(root / ".dot.jpg", "white")
    write_photo(root / "node_modules" / "n.jpg", "white")
    write_photo(root / "@eaDir" / "thumb.jpg", "white")
    write_photo(root / "raw" / "skip-me.jpg", "white")
    report = index(library, root, IndexSettings(workers=0, crawl=CrawlSettings(excludes=("raw",))))
    assert report.new == 4
    with_hidden = index(library, root, IndexSettings(workers=0, crawl=CrawlSettings(include_hidden=True, excludes=("raw",))))
    assert with_hidden.new == 2


def test_worker_processes_give_the_same_vectors(library, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "pics")
    index(library, tmp_path / "pics", IndexSettings(workers=2, batch_size=3))
    hits = library.search_text("yellow", k=4)
    assert hits[0].path == str(files["yellow"])
    assert len(hits) == 4


def test_search_image_excludes_itself(library, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "pics")
    write_photo(tmp_path / "pics" / "red2.jpg", (200, 40, 40), seed=7)
    index(library, tmp_path / "pics")
    hits = library.search_image(files["red"], k=3)
    assert str(files["red"]) not in [h.path for h in hits]
    assert hits[0].path == str(tmp_path / "pics" / "red2.jpg")
    outside = write_photo(tmp_path / "query.jpg", "red", seed=1)  # same pixels as files["red"], not indexed
    assert library.search_image(outside, k=1)[0].path == str(files["red"])


def test_errors_name_the_fix(library, tmp_path: Path) -> None:
    with pytest.raises(NothingIndexedError, match="imgsearch index"):
        library.search_text("red")
    with pytest.raises(UsageError, match="empty query"):
        library.search_text("   ")
    with pytest.raises(ImgSearchError, match="does not exist"):
        library.index([tmp_path / "nope"], FAKE, INLINE)
    with pytest.raises(UsageError, match="no folders given"):
        library.index((), FAKE, INLINE)


def test_second_indexer_is_refused_while_first_holds_the_lock(library, tmp_path: Path) -> None:
    make_tree(tmp_path / "pics")
    with library._index_lock():
        with pytest.raises(ImgSearchError, match=r"another indexer is already running .*pid \d+"):
            index(library, tmp_path / "pics")
    assert index(library, tmp_path / "pics").new == 4  # released: never stale


def test_vector_index_add_remove_save_load_round_trip(tmp_path: Path) -> None:
    import numpy as np

    from imgsearch.vectors.index import MemoryIndex

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(50, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(100, 150)
    index = MemoryIndex.build(16, ids, vecs)
    scores, found = index.search(vecs[7], 3)
    assert found[0, 0] == 107 and abs(scores[0, 0] - 1.0) < 1e-5
    assert index.remove(np.array([107, 999])) == 1 and len(index) == 49
    index.save(tmp_path / "i.faiss")
    assert [p.name for p in tmp_path.iterdir()] == ["i.faiss"]  # no temp file left behind
    loaded = MemoryIndex.load(tmp_path / "i.faiss")
    _, found = loaded.search(vecs[7], 49)
    assert 107 not in found[0] and len(loaded) == 49
    assert set(found[0]) == set(ids) - {107}
