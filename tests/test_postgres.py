"""A library on a real PostgreSQL server (tests/postgres.py): created and remembered by its folder, migrated,
locked against a second indexer anywhere, copied to and from SQLite, and every failure of the server a message
with the fix. (Indexing, search, duplicates, tags and concurrency run on both backends through the `library`
fixture: see conftest.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, make_url

from imgsearch.config import IndexSettings, ModelSpec
from imgsearch.errors import BusyError, DatabaseError
from imgsearch.library import Library
from imgsearch.store import engine as db
from imgsearch.store.orm import Base
from tests.factories import write_photo
from tests.postgres import PostgresServer, binary

FAKE = ModelSpec("fake", None)
COLOURS = ("red", "green", "blue", "yellow")


@pytest.fixture
def pics(tmp_path: Path) -> Path:
    for n, colour in enumerate(COLOURS):
        for i in range(3):
            write_photo(tmp_path / "pics" / f"{colour}-{i}.png", colour, seed=10 * n + i)
    return tmp_path / "pics"


def run(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgsearch", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_migrations_build_the_orm_schema_and_go_down_and_up(postgres: PostgresServer) -> None:
    engine = db.make_engine(postgres.create_database())
    try:
        db.upgrade_to_head(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        columns = {c["name"]: c["type"] for c in inspect(engine).get_columns("images")}
        assert str(columns["mtime_ns"]) == "BIGINT" and str(columns["size"]) == "BIGINT"  # ns and bytes need 64 bits
        db.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        db.upgrade_to_head(engine)
        db.check_schema(engine)
    finally:
        engine.dispose()


def test_the_folder_remembers_its_database_and_shows_no_password(tmp_path: Path, pics: Path, postgres: PostgresServer,
                                                                  tiny_model_dir: Path) -> None:
    url = postgres.create_database()
    with_password = url.replace("postgres@", "postgres:s3cret@")  # trust auth: accepted, and never written down
    lib = tmp_path / "lib"
    made = run("index", pics, "-L", lib, "--db", with_password, "-m", f"local-dir:{tiny_model_dir}", "--workers", "0")
    assert made.returncode == 0 and "12 new" in made.stderr, made.stderr
    manifest = json.loads((lib / "manifest.json").read_text())
    assert make_url(manifest["database"]) == make_url(url) and "s3cret" not in (lib / "manifest.json").read_text()
    assert not (lib / "library.db").exists()  # the data is on the server; the folder keeps the index cache
    found = run("search", "anything", "-L", lib, "--paths", "-k", "3")
    assert found.returncode == 0 and len(found.stdout.splitlines()) == 3, found.stderr
    status = run("status", "-L", lib, env={"IMGSEARCH_DB_URL": with_password})
    assert status.returncode == 0 and f"Database: {db.public_url(url)}" in status.stdout and "s3cret" not in status.stdout
    other = run("status", "-L", lib, env={"IMGSEARCH_DB_URL": postgres.url("elsewhere")})
    assert other.returncode == 2 and "imgsearch db copy --to" in other.stderr  # not silently another database


def test_a_second_indexer_anywhere_is_refused_with_the_holder(tmp_path: Path, pics: Path,
                                                              postgres: PostgresServer, fake_loader) -> None:
    url = postgres.create_database()
    first = Library.open(tmp_path / "a", create=True, encoder_loader=fake_loader, db_url=url)
    second = Library.open(tmp_path / "b", create=True, encoder_loader=fake_loader, db_url=url)  # another machine's folder
    try:
        with first._index_lock():  # an indexer running on the first machine
            with pytest.raises(BusyError, match=rf"already writing to .* \(\S+ pid {os.getpid()}\)"):
                second.index([pics], FAKE, IndexSettings(workers=0))
        assert second.index([pics], FAKE, IndexSettings(workers=0)).new == 12  # free again
        assert first.status().indexed == 12  # one library, seen from both folders
    finally:
        first.close()
        second.close()


def test_a_writer_that_lost_its_lock_writes_nothing_more(tmp_path: Path, pics: Path, postgres: PostgresServer,
                                                         fake_loader) -> None:
    """The connection holding the writer lock is ended under a running indexer (pg_terminate_backend, as an
    administrator or an idle timeout would): its next commit is refused with the reason, so a second indexer, let
    in since, is the only writer; the first one's earlier commits stay."""
    from sqlalchemy import create_engine, text

    from imgsearch import store

    url = postgres.create_database()
    first = Library.open(tmp_path / "a", create=True, encoder_loader=fake_loader, db_url=url)
    second = Library.open(tmp_path / "b", create=True, encoder_loader=fake_loader, db_url=url)
    admin = create_engine(url)
    try:
        with first._index_lock():
            with first.sessions.begin() as session:  # a batch committed while the lock is held
                store.add_roots(session, ["/committed/before"])
            with admin.begin() as conn:  # waits (up to a minute) until that backend has exited and its lock is gone:
                # without a timeout, pg_terminate_backend only signals it, and the next check could still find it
                ended = conn.execute(text("SELECT pg_terminate_backend(pid, 60000) FROM pg_locks "
                                          "WHERE locktype = 'advisory' AND granted")).scalars().all()
            assert ended == [True]
            with pytest.raises(BusyError, match="writer lock on .* was lost .* run the command again"):
                with first.sessions.begin() as session:
                    store.add_roots(session, ["/after/the/lock/was/lost"])
            assert second.index([pics], FAKE, IndexSettings(workers=0)).new == 12  # the lock is free: let in
        assert second.status().indexed == 12
        with second.sessions() as session:
            roots = store.list_roots(session)
        assert "/committed/before" in roots and "/after/the/lock/was/lost" not in roots
    finally:
        admin.dispose()
        first.close()
        second.close()


def test_db_copy_moves_a_library_to_postgresql_and_back(tmp_path: Path, pics: Path, postgres: PostgresServer,
                                                        fake_loader) -> None:
    lib_dir = tmp_path / "lib"
    with Library.open(lib_dir, create=True, encoder_loader=fake_loader) as lib:
        lib.index([pics], FAKE, IndexSettings(workers=0))
        lib.tag(["red", "blue"], top=1)
        lib.search_text("red", k=12)  # the text's vector is cached now (in fp16, as the copy will have it)
        before = sorted((h.path, round(h.score, 5)) for h in lib.search_text("red", k=12))
        tags = lib.status().tags
    sqlite_file = lib_dir / "library.db"
    original = sqlite_file.read_bytes()
    url = postgres.create_database()
    with Library.open(lib_dir, encoder_loader=fake_loader) as lib:
        report = lib.copy_database(url)
    assert report.rows > 12 and report.vectors >= 12 and report.tables >= 10
    assert sqlite_file.read_bytes() == original  # the source is only read
    with Library.open(lib_dir, encoder_loader=fake_loader) as lib:
        assert lib.engine.dialect.name == "postgresql"
        assert sorted((h.path, round(h.score, 5)) for h in lib.search_text("red", k=12)) == before
        assert lib.status().tags == tags and sum(tags.values()) == 12
        write_photo(pics / "new.png", "green", seed=99)
        assert lib.index([], FAKE, IndexSettings(workers=0)).new == 1  # ids continue after the copied ones
    back = run("db", "copy", "--to", f"sqlite:///{tmp_path / 'back.db'}", "-L", lib_dir)
    assert back.returncode == 0 and "counts and the checksum" in back.stderr, back.stderr
    with Library.open(lib_dir, encoder_loader=fake_loader) as lib:
        assert lib.engine.dialect.name == "sqlite" and lib.status().indexed == 13
        hits = lib.search_text("red", k=13)
        assert sorted((h.path, round(h.score, 5)) for h in hits if not h.path.endswith("new.png")) == before
    again = run("db", "copy", "--to", url, "-L", lib_dir)  # the first copy is not empty
    assert again.returncode == 1 and "holds an imgsearch library already" in again.stderr
    # a copy stopped before its rows committed leaves the schema and no rows: the next try fills it
    stopped = postgres.create_database()
    from imgsearch.store import engine as db

    left = db.make_engine(stopped)
    db.upgrade_to_head(left)
    left.dispose()
    retry = run("db", "copy", "--to", stopped, "-L", lib_dir)
    assert retry.returncode == 0 and "counts and the checksum" in retry.stderr, retry.stderr


def test_a_server_that_is_down_is_named_with_the_fix(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres@/photos?host={tmp_path / 'no-server'}"
    got = run("index", tmp_path, "-L", tmp_path / "lib", "--db", url)
    assert got.returncode == 1 and "cannot reach PostgreSQL at" in got.stderr and "start the server" in got.stderr
    assert "Traceback" not in got.stderr and not (tmp_path / "lib").exists()


@pytest.fixture(scope="module")
def locked_server():
    """A server that asks for passwords (scram-sha-256), with a role `photos` whose password is `right`."""
    server = PostgresServer()
    server.start()
    server.admin("CREATE ROLE photos LOGIN PASSWORD 'right'")
    server.admin("CREATE DATABASE lib OWNER photos")
    hba = server.data / "pg_hba.conf"
    hba.write_text("local all postgres trust\nlocal all all scram-sha-256\n")
    server.admin("SELECT pg_reload_conf()")
    yield server
    server.stop()


def test_a_wrong_password_and_a_missing_database_say_how_to_fix_them(tmp_path: Path, pics: Path,
                                                                      locked_server: PostgresServer) -> None:
    host = locked_server.base
    wrong = run("index", pics, "-L", tmp_path / "a", "--db", f"postgresql+psycopg://photos:wrong@/lib?host={host}")
    assert wrong.returncode == 1 and "refused the password of 'photos'" in wrong.stderr and "~/.pgpass" in wrong.stderr
    assert "wrong" not in wrong.stderr.split("refused")[0]  # the password itself is never printed
    missing_url = f"postgresql+psycopg://postgres@/photos2?host={host}"
    missing = run("index", pics, "-L", tmp_path / "b", "--db", missing_url)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    fix = missing.stderr.split("create it (`")[1].split("`")[0]
    assert fix == f"createdb -h {host} -U postgres photos2"
    made = subprocess.run([binary("createdb") or "createdb", *fix.split()[1:]], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    from tests.factories import FakeEncoder

    with Library.open(tmp_path / "b", create=True, db_url=missing_url,
                      encoder_loader=lambda spec: FakeEncoder("fake")) as lib:
        assert lib.index([pics], FAKE, IndexSettings(workers=0)).new == 12


def test_a_statement_past_the_timeout_is_named_with_the_fix(tmp_path: Path, postgres: PostgresServer,
                                                            fake_loader) -> None:
    import psycopg

    url = postgres.create_database()
    name = make_url(url).database
    Library.open(tmp_path / "lib", create=True, encoder_loader=fake_loader, db_url=url).close()
    postgres.admin(f'ALTER DATABASE "{name}" SET statement_timeout = \'300ms\'')
    with psycopg.connect(host=str(postgres.base), user="postgres", dbname=name) as blocker:
        blocker.execute("LOCK TABLE images IN ACCESS EXCLUSIVE MODE")  # a statement that waits past the timeout
        with Library.open(tmp_path / "lib", encoder_loader=fake_loader) as lib:
            with pytest.raises(DatabaseError, match="statement_timeout.*ALTER DATABASE"):
                lib.status()


def test_the_server_lost_mid_index_loses_nothing(tmp_path: Path) -> None:
    server = PostgresServer()
    server.start()
    try:
        url = server.create_database("photos")
        lib = tmp_path / "lib"
        Library.open(lib, create=True, db_url=url).close()
        for i in range(240):
            write_photo(tmp_path / "many" / f"{i:03d}.png", COLOURS[i % 4], size=(24, 16), seed=i)
        worker = subprocess.Popen([sys.executable, "-m", "tests.crash_worker", str(lib), str(tmp_path / "many")],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  cwd=Path(__file__).parent.parent)
        assert worker.stdout is not None
        while int(worker.stdout.readline().strip() or 0) < 40:  # some batches are committed
            pass
        server.stop(mode="immediate", remove=False)  # the server goes away mid-run
        _, stderr = worker.communicate(timeout=120)
        assert worker.returncode != 0 and "DatabaseUnreachableError: cannot reach PostgreSQL" in stderr, stderr[-2000:]
        assert "run the command again" in stderr
        server.restart()
        from tests.factories import FakeEncoder

        with Library.open(lib, encoder_loader=lambda spec: FakeEncoder("fake")) as again:
            saved = again.status().indexed
            assert 0 < saved < 240  # what was committed before stayed
            report = again.index([], FAKE, IndexSettings(workers=0))
            assert report.new == 240 - saved and again.status().indexed == 240
    finally:
        server.stop()


@contextmanager
def own_server_library(tmp_path: Path, pics: Path, fake_loader) -> Iterator[tuple[PostgresServer, Library]]:
    """A PostgreSQL server of the test's own (the test stops and restarts it) and a library on it, `pics` indexed."""
    server = PostgresServer()
    server.start()
    try:
        url = server.create_database("photos")
        with Library.open(tmp_path / "lib", create=True, encoder_loader=fake_loader, db_url=url) as lib:
            lib.index([pics], FAKE, IndexSettings(workers=0))
            yield server, lib
    finally:
        server.stop()


def test_serving_goes_on_after_a_server_restart(tmp_path: Path, pics: Path, fake_loader) -> None:
    """`imgsearch serve` on PostgreSQL: while the server is down, a request is a 503 that says what is wrong (not a
    500 "corrupt"); once it is back, the very next request is answered (the pool reconnects)."""
    from fastapi.testclient import TestClient

    from imgsearch.web.app import create_app
    from imgsearch.web.security import Guard

    with own_server_library(tmp_path, pics, fake_loader) as (server, lib):
        client = TestClient(create_app(lib, Guard(port=8765)), base_url="http://127.0.0.1:8765")
        asked = {"q": "red", "k": 3}
        assert client.get("/api/v1/search", params=asked).status_code == 200
        server.stop(mode="fast", remove=False)
        down = client.get("/api/v1/search", params={"q": "green", "k": 3})
        assert down.status_code == 503 and down.json()["error"]["code"] == "db_unreachable", down.text
        assert "cannot reach PostgreSQL" in down.json()["error"]["message"]
        server.restart()
        again = client.get("/api/v1/search", params={"q": "blue", "k": 3})
        assert again.status_code == 200 and len(again.json()["results"]) == 3


def test_a_server_restarted_between_two_searches_is_not_noticed(tmp_path: Path, pics: Path, fake_loader,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A pooled connection idle for a while is checked before use (a connection used a moment ago is not: see
    dialect.PING_AFTER_IDLE_S, here 0 so that the test does not depend on how long a restart takes): the search
    after a restart gets a new connection instead of an error. And searches read without BEGIN/ROLLBACK."""
    from imgsearch.store import dialect
    from imgsearch.search.query import Term

    monkeypatch.setattr(dialect, "PING_AFTER_IDLE_S", 0.0)
    with own_server_library(tmp_path, pics, fake_loader) as (server, lib):
        before = [r.path for r in lib.search([Term(1.0, "text", "red")])]
        server.stop(mode="fast", remove=False)
        server.restart()
        assert [r.path for r in lib.search([Term(1.0, "text", "red")])] == before and before
        sent: list[str] = []
        from sqlalchemy import event

        def seen(conn, _cursor, statement, *_):  # each statement, and whether psycopg will send a BEGIN first
            sent.append(f"{'autocommit' if conn.connection.dbapi_connection.autocommit else 'BEGIN'}: {statement}")

        event.listen(lib.engine, "before_cursor_execute", seen)
        lib.search([Term(1.0, "text", "red")])
        assert sent and all(q.startswith("autocommit: SELECT") for q in sent), sent


def test_an_idle_session_timeout_does_not_end_the_writer_lock(tmp_path: Path, pics: Path, postgres: PostgresServer,
                                                              fake_loader) -> None:
    """A server with idle_session_timeout ends connections that wait: the one holding the writer lock only waits, so
    the lock (and the indexer) went with it. Synced on the server itself: a plain connection opened beside the lock
    is ended first."""
    import psycopg
    from sqlalchemy import make_url as parse

    from imgsearch import store

    url = postgres.create_database()
    name = parse(url).database
    postgres.admin(f'ALTER DATABASE "{name}" SET idle_session_timeout = \'300ms\'')
    with Library.open(tmp_path / "lib", create=True, encoder_loader=fake_loader, db_url=url) as lib:
        with lib._index_lock():
            probe = psycopg.connect(host=str(postgres.base), user="postgres", dbname=name)  # idle from now on
            pid = probe.info.backend_pid
            while _backend_alive(postgres, name, pid):  # until the server ends the idle probe (the lock's
                pass  # connection, idle since before it, would have gone first)
            with lib.sessions.begin() as session:  # the lock is still held: a commit goes through
                store.add_roots(session, ["/still/the/writer"])
        assert lib.index([pics], FAKE, IndexSettings(workers=0)).new == 12


def _backend_alive(server: PostgresServer, name: str, pid: int) -> bool:
    import psycopg

    with psycopg.connect(host=str(server.base), user="postgres", dbname=name, autocommit=True) as watcher:
        watcher.execute("SELECT pg_sleep(0.05)")  # a poll interval, not a wait for the result
        return bool(watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0])


def test_db_upgrade_backs_up_with_pg_dump(tmp_path: Path, postgres: PostgresServer, fake_loader, pics: Path) -> None:
    url = postgres.create_database()
    lib_dir = tmp_path / "lib"
    with Library.open(lib_dir, create=True, encoder_loader=fake_loader, db_url=url) as lib:
        lib.index([pics], FAKE, IndexSettings(workers=0))
        db.downgrade(lib.engine, "-1")  # as a library written by the previous release
    old = run("status", "-L", lib_dir)
    assert old.returncode == 1 and "imgsearch db upgrade" in old.stderr
    done = run("db", "upgrade", "-L", lib_dir)
    assert done.returncode == 0, done.stderr
    dumps = list(lib_dir.glob("*.pgdump"))
    assert len(dumps) == 1 and dumps[0].stat().st_size > 1000 and f"Backed up to {dumps[0]}" in done.stderr
    listed = subprocess.run([binary("pg_restore") or "pg_restore", "--list", str(dumps[0])], capture_output=True,
                            text=True)
    assert listed.returncode == 0 and "TABLE DATA public embeddings" in listed.stdout  # a real, restorable dump
    assert run("status", "-L", lib_dir).returncode == 0
