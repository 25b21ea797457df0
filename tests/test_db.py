"""Schema: migrations match the ORM, go down and up, and every mismatch names its fix."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from imgsearch import db
from imgsearch.errors import DatabaseError, SchemaOutdatedError, SchemaTooNewError
from imgsearch.library import Library
from imgsearch.orm import Base


def test_upgrade_to_head_matches_the_orm_exactly(tmp_path: Path) -> None:
    engine = db.make_engine(tmp_path / "x.db")
    db.upgrade_to_head(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    assert db.current_revision(engine) == db.head_revision()
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


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Library.open(tmp_path / "lib", create=True).close()
    con = sqlite3.connect(tmp_path / "lib" / "library.db")
    con.execute("UPDATE alembic_version SET version_num = 'ffff_future'")
    con.commit()
    con.close()
    with pytest.raises(SchemaTooNewError, match="newer imgsearch .*ffff_future"):
        Library.open(tmp_path / "lib")


def test_corrupt_database_names_the_file_and_the_fix(tmp_path: Path) -> None:
    Library.open(tmp_path / "lib", create=True).close()
    for leftover in (tmp_path / "lib").glob("library.db-*"):
        leftover.unlink()
    (tmp_path / "lib" / "library.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseError, match=r"library\.db is not a readable SQLite database.*photos are not touched"):
        Library.open(tmp_path / "lib")
