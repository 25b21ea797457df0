"""Hostile conditions: full disks, read-only databases, kills mid-run, concurrent use."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from imgsearch import store
from imgsearch.config import IndexSettings, ModelSpec
from imgsearch.errors import ImgSearchError
from imgsearch.vectors.index import MemoryIndex
from tests.factories import write_photo

FAKE = ModelSpec("fake", None)
INLINE = IndexSettings(workers=0)


def tree(root: Path, n: int = 6) -> Path:
    for i in range(n):
        write_photo(root / f"{i}.jpg", ("red", "green", "blue")[i % 3], seed=i, fmt="JPEG")
    return root


def test_disk_full_while_saving_the_index_is_a_clear_error_and_nothing_is_lost(library, tmp_path: Path,
                                                                                 monkeypatch) -> None:
    def full(self, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(MemoryIndex, "save", full)
    with pytest.raises(ImgSearchError, match=r"cannot write to the library at .*the disk is full.*run the same command again"):
        library.index([tree(tmp_path / "pics")], FAKE, INLINE)
    monkeypatch.undo()
    with library.session() as session:  # the vectors were committed before the index save failed
        assert store.count_images(session) == {"indexed": 6}
    report = library.index([tmp_path / "pics"], FAKE, INLINE)
    assert (report.unchanged, report.encoded, report.indexed_total) == (6, 0, 6)
    assert library.search_text("red", k=1)[0].path.endswith(("0.jpg", "3.jpg"))


@pytest.mark.parametrize("message,fix", [("database or disk is full", "the disk is full"),
                                         ("attempt to write a readonly database", "library.db is read-only")])
def test_database_write_failures_name_the_fix(library, tmp_path: Path, monkeypatch, message: str, fix: str) -> None:
    def fail(*args, **kwargs):
        raise OperationalError("INSERT", {}, sqlite3.OperationalError(message))

    monkeypatch.setattr(store, "save_vectors", fail)
    with pytest.raises(ImgSearchError, match=fix):
        library.index([tree(tmp_path / "pics")], FAKE, INLINE)
    monkeypatch.undo()
    assert library.index([tmp_path / "pics"], FAKE, INLINE).encoded == 6


def test_read_only_index_folder_still_answers_searches(library, tmp_path: Path, monkeypatch) -> None:
    library.index([tree(tmp_path / "pics")], FAKE, INLINE)
    for f in library.index_dir.iterdir():
        f.unlink()  # the cache is gone and cannot be written back

    def read_only(self, path):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(MemoryIndex, "save", read_only)
    assert len(library.search_text("blue", k=10)) == 6


def test_sigkill_at_random_moments_loses_at_most_a_batch_and_never_corrupts(tmp_path: Path, fake_loader) -> None:
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    from imgsearch.library import Library
    from imgsearch.vectors.build import ensure_index

    root = tmp_path / "pics"
    for i in range(240):
        write_photo(root / f"d{i % 7}" / f"{i}.png", (i % 250, (i * 7) % 250, (i * 13) % 250), size=(24, 16), seed=i)
    lib_dir = tmp_path / "lib"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    rng = random.Random(0)
    committed = 0
    kills = 0
    batch = 4  # FakeEncoder.batch_size: one DB transaction per batch
    for attempt in range(8):
        proc = subprocess.Popen([sys.executable, "-m", "tests.crash_worker", str(lib_dir), str(root)],
                                stdout=subprocess.PIPE, text=True, env=env)
        # killed once it says it has encoded a random number of images (the library exists by then, whatever the
        # machine's speed), a moment later or sooner: between encoding, writing and committing a batch
        target, out = rng.randint(1, 40), []
        for line in proc.stdout:
            out.append(line.strip())
            if line.strip() == "done" or int(line) >= target:
                break
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        out += proc.communicate()[0].split()
        if "done" in out:
            break
        kills += 1
        encoded_by_run = int(out[-1]) if out else 0
        con = sqlite3.connect(lib_dir / "library.db")
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        now = con.execute("SELECT count(*) FROM embeddings").fetchone()[0] if (lib_dir / "library.db").exists() else 0
        con.close()
        assert now >= committed
        assert encoded_by_run - (now - committed) <= 2 * batch, (attempt, encoded_by_run, now, committed)
        committed = now
        with Library.open(lib_dir, encoder_loader=fake_loader) as lib:  # the index agrees with the DB again
            with lib.session() as session:
                model_id = store.list_models(session)[0].id if committed else None
            if model_id is not None:
                _, index = ensure_index(lib.sessions, model_id, lib.index_dir)
                assert len(index) == committed
                assert len(lib.search_text("red", k=500)) == committed
    assert kills >= 3
    con = sqlite3.connect(lib_dir / "library.db")
    committed = con.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    con.close()
    with Library.open(lib_dir, encoder_loader=fake_loader) as lib:
        report = lib.index([root], FAKE, INLINE)
        assert report.encoded == 240 - committed and report.indexed_total == 240


def test_a_decoder_that_kills_its_worker_skips_that_file_and_keeps_going(tmp_path: Path) -> None:
    from imgsearch.images.decode import Decoded, Geometry
    from imgsearch.images.crawl import Skipped
    from imgsearch.images.loader import load
    from tests.crash_helpers import crashing_decode_chunk

    root = tree(tmp_path / "pics", 30)
    (root / "crash-me.jpg").write_bytes((root / "0.jpg").read_bytes())
    (root / "crash-too.jpg").write_bytes((root / "1.jpg").read_bytes())
    paths = sorted(str(p) for p in root.iterdir())
    items = list(load(paths, Geometry(16, 16), 10**9, workers=2, decode_chunk=crashing_decode_chunk))
    assert sorted(i.path for i in items) == paths  # every file once
    skipped = {i.path: i.reason for i in items if isinstance(i, Skipped)}
    assert set(skipped) == {str(root / "crash-me.jpg"), str(root / "crash-too.jpg")}
    assert all("decoder crashed" in r for r in skipped.values())
    assert sum(isinstance(i, Decoded) for i in items) == 30


def test_searches_answer_while_an_indexer_writes(tmp_path: Path, fake_loader) -> None:
    import os
    import subprocess
    import sys

    from imgsearch.library import Library

    lib_dir = tmp_path / "lib"
    first = tree(tmp_path / "first", 12)
    with Library.open(lib_dir, create=True, encoder_loader=fake_loader) as lib:
        lib.index([first], FAKE, INLINE)
    second = tmp_path / "second"
    for i in range(150):
        write_photo(second / f"{i}.png", (i, 255 - i, 100), size=(16, 16), seed=i)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.crash_worker", str(lib_dir), str(second)],
                            stdout=subprocess.PIPE, text=True, env=env)
    counts = []
    try:
        with Library.open(lib_dir, encoder_loader=fake_loader) as lib:
            while proc.poll() is None and len(counts) < 200:
                counts.append(len(lib.search_text("red", k=1000)))
        out = proc.communicate(timeout=60)[0]
    finally:
        proc.kill()
    assert "done" in out
    assert len(counts) >= 3 and min(counts) >= 12 and counts == sorted(counts)
    with Library.open(lib_dir, encoder_loader=fake_loader) as lib:
        assert len(lib.search_text("red", k=1000)) == 162


def test_when_worker_processes_cannot_start_files_are_decoded_in_process(tmp_path: Path) -> None:
    from imgsearch.images.decode import Decoded, Geometry
    from imgsearch.images.loader import StageTimes, load
    from tests.crash_helpers import unstartable_decode_chunk

    paths = sorted(str(p) for p in tree(tmp_path / "pics", 10).iterdir())
    times = StageTimes()
    items = list(load(paths, Geometry(16, 16), 10**9, workers=2, times=times, decode_chunk=unstartable_decode_chunk))
    assert sorted(i.path for i in items) == paths and all(isinstance(i, Decoded) for i in items)
    assert times.notes == ["decode worker processes could not start; decoded in the main process"]


def test_library_api_from_a_script_on_stdin_uses_worker_processes(tmp_path: Path) -> None:
    """`python - < script`: workers must not try to re-run a main file that does not exist."""
    import os
    import subprocess
    import sys

    root = tree(tmp_path / "pics", 12)
    script = f"""
from imgsearch.config import IndexSettings, ModelSpec
from imgsearch.library import Library
from tests.factories import FakeEncoder
enc = FakeEncoder("fake")
with Library.open({str(tmp_path / 'lib')!r}, create=True, encoder_loader=lambda spec: enc) as lib:
    r = lib.index([{str(root)!r}], ModelSpec("fake", None), IndexSettings(workers=2))
    print("RESULT", r.new, r.times.cpu_images, r.warnings)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert "RESULT 12 12 []" in out.stdout, out.stderr[-2000:]


@contextmanager
def holding_writes(library) -> Iterator[None]:
    """Another connection holding the database's write lock (SQLite), or the text cache's table (PostgreSQL)."""
    if library.engine.dialect.name == "sqlite":
        blocker = sqlite3.connect(library.db_path, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        blocker = psycopg.connect(library.engine.url.set(drivername="postgresql").render_as_string(hide_password=False))
        blocker.execute("LOCK TABLE text_vectors IN EXCLUSIVE MODE")
    try:
        yield
    finally:
        blocker.rollback()
        blocker.close()


def test_searches_answer_while_another_process_holds_the_write_lock(library, tmp_path: Path, fake_encoders) -> None:
    library.index([tree(tmp_path / "pics")], FAKE, INLINE)
    assert len(library.search_text("red", k=10)) == 6  # "red" is now in the text cache
    with holding_writes(library):  # an indexer mid-batch, or any writer
        assert len(library.search_text("red", k=10)) == 6  # cached text: its cache touch is skipped
        assert len(library.search_text("blue", k=10)) == 6  # new text: encoded, not cached, still answered
    before = fake_encoders["fake"].texts_encoded
    library.search_text("blue", k=1)
    assert fake_encoders["fake"].texts_encoded == before + 1  # it was not cached while the lock was held
    library.search_text("blue", k=1)
    assert fake_encoders["fake"].texts_encoded == before + 1  # and is now
