"""Schema: migrations match the ORM, go down and up, and every mismatch names its fix."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select

from imgsearch.store import engine as db
from imgsearch.errors import DatabaseError, SchemaOutdatedError, SchemaTooNewError
from imgsearch.library import Library
from imgsearch.store.orm import Base, Image


def test_upgrade_to_head_matches_the_orm_exactly(tmp_path: Path) -> None:
    engine = db.make_engine(tmp_path / "x.db")
    db.upgrade_to_head(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    assert db.current_revision(engine) == db.head_revision() == db.HEAD_REVISION  # the constant follows Alembic
    db.check_schema(engine)  # no error at head


def test_downgrade_then_upgrade_round_trips(tmp_path: Path) -> None:
    engine = db.make_engine(tmp_path / "x.db")
    db.upgrade_to_head(engine)
    db.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    db.upgrade_to_head(engine)
    assert {"images", "models", "embeddings", "index_builds", "runs", "roots"} <= set(inspect(engine).get_table_names())


def test_wal_and_foreign_keys_are_on(tmp_path: Path) -> None:
    engine = db.make_engine(tmp_path / "x.db")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_older_schema_is_refused_until_db_upgrade_which_backs_up_first(tmp_path: Path) -> None:
    lib = Library.open(tmp_path / "lib", create=True)
    db.downgrade(lib.engine, "base")
    lib.close()
    with pytest.raises(SchemaOutdatedError, match="imgsearch db upgrade"):
        Library.open(tmp_path / "lib")
    copy = db.backup(tmp_path / "lib" / "library.db")
    assert sqlite3.connect(copy).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    engine = db.make_engine(tmp_path / "lib" / "library.db")
    db.upgrade_to_head(engine)
    engine.dispose()
    Library.open(tmp_path / "lib").close()


@pytest.mark.parametrize("rows", [["0008"], ["0008", "0009"]], ids=["behind", "two rows"])
def test_a_stale_revision_row_is_settled_by_the_upgrade_its_message_names(tmp_path: Path, rows: list[str]) -> None:
    """The tables are this version's, the revision row is not (an interrupted upgrade, a copy, a hand edit): the
    message says `imgsearch db upgrade`, which then failed with a traceback ("duplicate column"). It now sees the
    tables are current, sets the row right and touches no table; the library opens."""
    import subprocess
    import sys

    Library.open(tmp_path / "lib", create=True).close()
    conn = sqlite3.connect(tmp_path / "lib" / "library.db")
    conn.execute("DELETE FROM alembic_version")
    conn.executemany("INSERT INTO alembic_version VALUES (?)", [(r,) for r in rows])
    conn.commit()
    conn.close()
    with pytest.raises(SchemaOutdatedError, match="Run `imgsearch db upgrade`") as refused:
        Library.open(tmp_path / "lib")
    fix = refused.value.message.split("Run `")[1].split("`")[0]
    done = subprocess.run([sys.executable, "-m", *fix.split(), "-L", str(tmp_path / "lib")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert f"-> {db.HEAD_REVISION}" in done.stderr and "Backed up to" in done.stderr
    with Library.open(tmp_path / "lib") as lib:
        assert db.current_revision(lib.engine) == db.HEAD_REVISION


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Library.open(tmp_path / "lib", create=True).close()
    con = sqlite3.connect(tmp_path / "lib" / "library.db")
    con.execute("UPDATE alembic_version SET version_num = 'ffff_future'")
    con.commit()
    con.close()
    with pytest.raises(SchemaTooNewError, match="newer imgsearch .*ffff_future.*PyPI's 'imgsearch' is another project"):
        Library.open(tmp_path / "lib")


def test_corrupt_database_names_the_file_and_the_fix(tmp_path: Path) -> None:
    Library.open(tmp_path / "lib", create=True).close()
    for leftover in (tmp_path / "lib").glob("library.db-*"):
        leftover.unlink()
    (tmp_path / "lib" / "library.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseError, match=r"library\.db is not a readable SQLite database.*photos are not touched"):
        Library.open(tmp_path / "lib")


def test_upgrade_from_0001_keeps_data_and_the_library_works(tmp_path: Path) -> None:
    """A library written by the first release: its rows survive 0002, old index files are rebuilt."""
    import numpy as np

    from imgsearch.config import ModelSpec
    from tests.factories import FakeEncoder, write_photo

    lib_dir = tmp_path / "lib"
    Library.open(lib_dir, create=True).close()
    engine = db.make_engine(lib_dir / "library.db")
    db.downgrade(engine, "0001")
    photo = write_photo(tmp_path / "pics" / "red.jpg", "red", fmt="JPEG")
    vector = np.zeros(8, np.float16)
    vector[0] = 1
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO models (id, key, name, dim, preprocess, generation, created_at, last_used_at) "
                             "VALUES (1, 'fake|fake', 'fake', 8, '{}', 3, '2025-01-01', '2025-01-01')")
        st = photo.stat()
        conn.exec_driver_sql("INSERT INTO images (id, path, size, mtime_ns, content_hash, status, first_seen_at, updated_at) "
                             f"VALUES (7, '{photo}', {st.st_size}, {st.st_mtime_ns}, 'h', 'indexed', '2025-01-01', '2025-01-01')")
        conn.exec_driver_sql("INSERT INTO embeddings (image_id, model_id, vector) VALUES (7, 1, ?)", (vector.tobytes(),))
        conn.exec_driver_sql("INSERT INTO index_builds (model_id, spec, count, generation, filename, build_s, built_at) "
                             "VALUES (1, 'IDMap2,Flat', 1, 3, 'old.faiss', 0.1, '2025-01-01')")
    (lib_dir / "indexes").mkdir(exist_ok=True)
    (lib_dir / "indexes" / "old.faiss").write_bytes(b"a format this version does not read")
    with pytest.raises(SchemaOutdatedError):
        Library.open(lib_dir)
    db.upgrade_to_head(engine)
    engine.dispose()
    with Library.open(lib_dir, encoder_loader=lambda spec: FakeEncoder("fake")) as lib:
        assert lib.status().indexed == 1
        hits = lib.search_text("red", k=5, model=ModelSpec("fake", None))
        assert [(h.id, h.path) for h in hits] == [(7, str(photo))]
        assert abs(hits[0].score - FakeEncoder("fake").encode_texts(["red"])[0][0]) < 1e-3


def test_every_migration_goes_down_and_up_with_photos_in_the_library(library, tmp_path: Path) -> None:
    """On SQLite and PostgreSQL (the `library` fixture runs on both), with photos indexed (sizes and nanosecond
    times past 32 bits, vectors, fingerprints, a duplicates scan): one revision down at a time to the first, then up
    again one at a time; every step runs, and the photos' rows survive the steps that keep their tables."""
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    from imgsearch.config import DupOptions, IndexSettings, ModelSpec
    from tests.factories import write_photo

    for n, colour in enumerate(("red", "green", "blue")):
        write_photo(tmp_path / "pics" / f"{colour}.jpg", colour, seed=n)
    library.index([tmp_path / "pics"], ModelSpec("fake", None), IndexSettings(workers=0))
    library.duplicates(DupOptions())
    engine = library.engine

    def photos() -> int:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM images")).scalar_one()

    assert photos() == 3
    script = ScriptDirectory.from_config(db._alembic_config())
    revisions = [r.revision for r in script.walk_revisions("base", "heads")]  # newest first
    for revision in revisions[:-1]:  # down to the first revision, one at a time
        db.downgrade(engine, script.get_revision(revision).down_revision)
        assert db.current_revision(engine) == script.get_revision(revision).down_revision
        assert photos() == 3, revision
    for revision in reversed(revisions[:-1]):
        db.upgrade_to_head(engine, revision)
        assert db.current_revision(engine) == revision and photos() == 3
    db.check_schema(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT min(mtime_ns) FROM images")).scalar_one() > 2**31  # 64-bit times kept
    # 0011 gave the photos indexed before it their dates (the files' times: no EXIF), as a new row gets them
    from imgsearch.store.images import photo_date
    with library.session() as session:
        dated = {(r.shot_at, photo_date(r.taken_at, r.mtime_ns)) for r in session.scalars(select(Image))}
    assert len(dated) == 3 and all(a is not None and abs((a - b).total_seconds()) < 1e-3 for a, b in dated), dated
    assert len(library.month_photos(next(iter(dated))[1].strftime("%Y-%m"))) == 3
