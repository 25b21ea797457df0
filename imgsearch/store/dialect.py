"""Everything that differs between the databases a library can live in: its own SQLite file, or a PostgreSQL
server that several machines share.

The query modules speak portable SQLAlchemy; what cannot be portable is asked of this module: connection setup,
what a failure means for the user, upserts, a date's month, the bound-parameter limit, lock waits, the
one-writer lock, backups.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, func, insert, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.errors import BusyError, DatabaseError, DatabaseUnreachableError, DiskFullError, ImgSearchError

SQLITE = "sqlite"
POSTGRESQL = "postgresql"

# The smallest bound-parameter limit among the supported databases (SQLite's 999 of old builds):
# statements over id lists are cut into chunks of this many.
BATCH_PARAMS = 900
BUSY_TIMEOUT_MS = 10_000  # how long a writer waits for another writer's lock


def name_of(bind: Session | Engine) -> str:
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    return engine.dialect.name


def chunks(items: Sequence, n: int = BATCH_PARAMS) -> Iterable[Sequence]:
    """`items` in slices small enough to bind as parameters of one statement."""
    for i in range(0, len(items), n):
        yield items[i:i + n]


def engine_options(url: str) -> dict:
    """create_engine() arguments: SQLite waits for a writer's lock; PostgreSQL connections name their host and
    process (so a refused second indexer can say who holds the library) and give up connecting after 10 s; see
    configure() for how they are checked before use."""
    if url.startswith(SQLITE):
        return {"connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000}}
    return {"connect_args": {"connect_timeout": 10, "application_name": f"imgsearch {socket.gethostname()} pid "
                                                                        f"{os.getpid()}"}}


# A pooled PostgreSQL connection idle for longer than this is checked (a round trip) before it is used: a server
# restarted meanwhile is reconnected, not reported. One used again sooner is not: under load that check was the
# costliest of a cached search's round trips. (A server restarted within a second of a connection's last use is
# noticed by that connection's next statement instead: one request gets the "cannot reach PostgreSQL" answer, and the
# pool, which drops every connection on such an error, reconnects for the next.)
PING_AFTER_IDLE_S = 1.0


def configure(engine: Engine, read_only: bool = False) -> None:
    """Per-connection settings: SQLite gets WAL (readers never wait for a writer), foreign keys, a busy wait.
    Failures become errors that say what happened and the fix, wherever a statement meets them: a damaged
    SQLite file; a PostgreSQL server that is down, refuses the password, lacks the database, dropped the
    connection, ran out of disk or cancelled a statement."""
    if engine.dialect.name == POSTGRESQL:
        @event.listens_for(engine, "handle_error")
        def _server_failure(context) -> None:  # sqlalchemy ExceptionContext
            if context.is_pre_ping:  # a pooled connection found dead at checkout: the pool reconnects by itself
                return
            failure = _postgres_failure(engine, context.original_exception, context.is_disconnect)
            if failure is not None:
                raise failure from context.original_exception

        @event.listens_for(engine, "checkin")
        def _idle_since(_dbapi_conn: Any, record: Any) -> None:  # sqlalchemy ConnectionPoolEntry
            record.info["idle_since"] = time.monotonic()

        @event.listens_for(engine, "checkout")
        def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
            since = record.info.get("idle_since")
            if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
                return  # new (just connected), or in use a moment ago
            try:
                engine.dialect.do_ping(dbapi_conn)
            except Exception as exc:  # the pool drops it and checks out (or opens) another
                raise DisconnectionError() from exc
        return
    if engine.dialect.name != SQLITE:
        return

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        cur = dbapi_conn.cursor()
        if not read_only:  # a read-only file keeps the journal mode it has
            # NORMAL sync is durable at checkpoints in WAL mode
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "handle_error")
    def _damaged(context) -> None:  # sqlalchemy ExceptionContext
        orig = context.original_exception
        if isinstance(orig, sqlite3.DatabaseError) and any(m in str(orig) for m in DAMAGED):
            raise DatabaseError(damaged_message(engine, orig)) from orig


class ChangeCounter:
    """A number that changes whenever anything was committed to the database since it was last read, by any
    connection of any process, told in microseconds with no round trip: SQLite's `PRAGMA data_version`, asked of a
    connection of its own that never writes (a connection's own commits do not change its count)."""

    def __init__(self, engine: Engine) -> None:
        self._own = engine.raw_connection()
        self._own.detach()  # out of the pool: closed by close()
        self._lock = threading.Lock()

    def value(self) -> int:
        with self._lock:
            return self._own.cursor().execute("PRAGMA data_version").fetchall()[0][0]

    def close(self) -> None:
        with self._lock:
            self._own.close()


DAMAGED = ("malformed", "file is not a database", "disk I/O error", "Could not decode to UTF-8")  # the last: garbled text
_KEPT = "Everything committed before is kept (each batch is one transaction): run the command again once fixed."


def describe(engine: Engine) -> str:
    """The database as a user knows it: a file path, or the server URL without its password."""
    if engine.dialect.name == SQLITE:
        return (engine.url.database or "").removeprefix("file:")
    return engine.url._replace(password=None).render_as_string(hide_password=False)


def damaged_message(engine: Engine, reason: object) -> str:
    return (f"{describe(engine)} is not a readable SQLite database ({reason}). Restore it from a backup "
            "(library.db.bak-* beside it), or move the library folder away and index your photo folders again "
            "(`imgsearch index FOLDER...`): your photos are not touched.")


def database_error(engine: Engine, reason: BaseException | None) -> ImgSearchError:
    """What a failure to open or read the database means, with the fix."""
    if engine.dialect.name == POSTGRESQL:
        return _postgres_failure(engine, reason, True) or DatabaseError(f"{describe(engine)}: {reason}")
    return DatabaseError(damaged_message(engine, reason))


def _server(engine: Engine) -> tuple[str, str, str]:
    """(host or socket folder, user, database name) of a PostgreSQL URL."""
    url = engine.url
    host = url.host or str(url.query.get("host") or os.environ.get("PGHOST") or "localhost")
    return host, url.username or os.environ.get("PGUSER") or "postgres", url.database or ""


def _postgres_failure(engine: Engine, exc: BaseException | None, disconnect: bool) -> ImgSearchError | None:
    """A PostgreSQL failure a user can act on, as an error naming the fix; None for anything else (a bug)."""
    message = str(exc or "")
    lower = message.lower()
    state = getattr(exc, "sqlstate", None)
    where = describe(engine)
    host, user, name = _server(engine)
    if f'database "{name}" does not exist' in message:
        return DatabaseError(f"the database {name!r} does not exist on {host}: create it (`createdb -h {host} -U {user} "
                             f"{name}`) or fix the URL ({where}).")
    if "role" in lower and "does not exist" in lower:
        return DatabaseError(f"the PostgreSQL user {user!r} does not exist on {host}: create it (`createuser -h {host} "
                             f"{user}`, as a superuser) or fix the URL ({where}).")
    if "password authentication failed" in lower or "no password supplied" in lower:
        return DatabaseError(f"PostgreSQL at {host} refused the password of {user!r}: put the right one in "
                             "~/.pgpass (or the file PGPASSFILE names), in PGPASSWORD, or in the URL of "
                             f"IMGSEARCH_DB_URL ({where}).")
    if state == "57014" or "statement timeout" in lower:
        return DatabaseError(f"a statement on {where} ran past the server's statement_timeout and was cancelled: "
                             f"raise it for this database (ALTER DATABASE {name} SET statement_timeout = '10min'). "
                             + _KEPT)
    if state in ("53100",) or "no space left on device" in lower or "could not extend file" in lower:
        return DiskFullError(f"the PostgreSQL server of {where} is out of disk space: free some there. " + _KEPT)
    if state in ("53300",) or "too many clients" in lower or "remaining connection slots" in lower:
        return BusyError(f"PostgreSQL at {host} has no free connection slot: close other clients or raise "
                         "max_connections, then try again.")
    if disconnect or state in ("57P01", "57P02", "57P03", "08000", "08003", "08006") or any(
            m in lower for m in ("connection refused", "could not connect", "connection is lost",
                                 "server closed the connection", "terminating connection", "the connection is closed",
                                 "connection timeout", "timeout expired", "could not translate host name",
                                 "no such file or directory", "database system is shutting down",
                                 "database system is starting up", "database system is in recovery mode")):
        if not message:
            return None
        return DatabaseUnreachableError(f"cannot reach PostgreSQL at {host} ({message.strip().splitlines()[0]}): start the "
                             f"server or fix the URL ({where}), then run the command again. " + _KEPT)
    return None


def _insert(session: Session, table):  # a dialect's INSERT with ON CONFLICT
    if name_of(session) == POSTGRESQL:
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def upsert(session: Session, table, rows: Sequence[dict], keys: Sequence, update: Sequence[str],
           batch: int = 150) -> None:
    """Insert rows; a row whose `keys` exist already replaces the `update` columns."""
    for part in chunks(list(rows), batch):
        stmt = _insert(session, table).values(list(part))
        session.execute(stmt.on_conflict_do_update(index_elements=list(keys),
                                                   set_={c: stmt.excluded[c] for c in update}))


def bulk_insert(session: Session, table, rows: Sequence[dict]) -> None:  # a mapped class
    """Insert many rows at once: PostgreSQL's COPY (several times faster than INSERT for vectors), else an
    executemany INSERT."""
    if not rows:
        return
    if name_of(session) != POSTGRESQL:
        session.execute(insert(table), list(rows))
        return
    _copy(session, table.__tablename__, rows)


def _copy(session: Session, table_name: str, rows: Sequence[dict]) -> None:
    """PostgreSQL's COPY of rows (dicts with the same keys) into a table, in the session's transaction."""
    columns = list(rows[0])
    raw: Any = session.connection().connection.dbapi_connection  # the transaction's own (psycopg) connection: COPY joins it
    with raw.cursor() as cur, cur.copy(f"COPY {table_name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def copy_upsert(session: Session, table, rows: Sequence[dict], keys: Sequence[str]) -> None:  # a mapped class
    """PostgreSQL: insert many rows, a row whose `keys` exist already replacing the other columns, by COPY into a
    temporary table and one INSERT ... ON CONFLICT from it. (Deleting by key first let the planner scan the whole
    table through a non-selective index while its statistics were stale, as they are after a bulk load: 0.2-0.7 s
    a statement; the conflict check always probes the primary key.)"""
    if not rows:
        return
    name, columns = table.__tablename__, list(rows[0])
    staging = f"incoming_{name}"
    session.execute(text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} "
                         f"(LIKE {name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"))
    session.execute(text(f"TRUNCATE {staging}"))
    _copy(session, staging, rows)
    changed = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in keys)
    session.execute(text(f"INSERT INTO {name} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM {staging} "
                         f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {changed}"))


def insert_with_ids(session: Session, table, rows: Sequence[dict]) -> list[int]:  # a mapped class
    """Insert rows of a table with an integer id; their new ids, in order. PostgreSQL takes the ids from the id
    sequence first and COPYs the rows with them (a multi-row INSERT ... RETURNING costs psycopg more time to
    prepare than the server takes to run)."""
    if not rows:
        return []
    if name_of(session) != POSTGRESQL:
        return list(session.scalars(insert(table).returning(table.id, sort_by_parameter_order=True), list(rows)))
    ids = list(session.scalars(text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
                               {"t": table.__tablename__, "n": len(rows)}))
    bulk_insert(session, table, [{"id": i, **row} for i, row in zip(ids, rows)])
    return ids


def insert_missing(session: Session, table, rows: Sequence[dict], batch: int = 150) -> None:
    """Insert rows, leaving alone any whose primary key exists already."""
    for part in chunks(list(rows), batch):
        session.execute(_insert(session, table).values(list(part)).on_conflict_do_nothing())


def month_of(session: Session, when):  # an SQL expression: a DateTime column
    """SQL: the 'YYYY-MM' of a date (SQLite keeps dates as ISO text)."""
    if name_of(session) == POSTGRESQL:
        return func.to_char(when, "YYYY-MM")
    return func.substr(when, 1, 7)


@contextmanager
def lock_wait(session: Session, ms: int) -> Iterator[None]:
    """Statements of this session wait at most `ms` for another writer's lock (then fail: OperationalError).

    Leave the block before the session commits: on SQLite the setting belongs to the pooled connection.
    """
    if name_of(session) == POSTGRESQL:
        session.execute(text(f"SET LOCAL lock_timeout = {int(ms)}"))  # ends with the transaction
        yield
        return
    raw: Any = session.connection().connection.dbapi_connection  # the pooled connection itself keeps the setting
    raw.execute(f"PRAGMA busy_timeout={int(ms)}")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


@contextmanager
def writer_lock(engine: Engine, sessions: sessionmaker[Session] | None = None) -> Iterator[None]:
    """One writer per database, across machines: on PostgreSQL an advisory lock held by a connection of this
    process (the server releases it when the process or its connection dies, so it cannot go stale); a second
    writer anywhere is refused with the holder's host and process. SQLite libraries rely on the folder's flock.

    While it is held, every commit of `sessions` first checks that the lock still is (an administrator's
    pg_terminate_backend, a server restart or an idle timeout can end the connection holding it): if it is gone,
    the commit is refused with BusyError, so a writer that lost the lock writes nothing more."""
    if engine.dialect.name != POSTGRESQL:
        yield
        return
    with engine.connect() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": WRITER_LOCK_KEY}).scalar():
            holder = conn.execute(text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = :objid AND l.database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1"),
                {"objid": WRITER_LOCK_KEY & 0xFFFFFFFF}).scalar()
            conn.rollback()
            who = (holder or "another client").removeprefix("imgsearch ")
            raise BusyError(f"another indexer is already writing to {describe(engine)} ({who}): wait for it to "
                            "finish, or stop it.")
        holder_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        if conn.dialect.server_version_info and conn.dialect.server_version_info >= (14,):
            # the lock's connection only waits: a server's idle_session_timeout must not end it (and the lock)
            conn.execute(text("SET idle_session_timeout = 0"))
        conn.commit()  # the lock is the session's, not the transaction's: it stays until released

        def still_held(session: Session) -> None:
            held = session.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = :objid "
                "AND pid = :pid AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
                {"objid": WRITER_LOCK_KEY & 0xFFFFFFFF, "pid": holder_pid}).scalar()
            if not held:
                raise BusyError(f"the writer lock on {describe(engine)} was lost (the connection holding it was "
                                "closed: a server restart, an idle timeout, or an administrator ended it): stopped "
                                "before writing more. Nothing committed before is lost; run the command again.")

        if sessions is not None:
            event.listen(sessions, "before_commit", still_held)
        try:
            yield
        finally:
            if sessions is not None:
                event.remove(sessions, "before_commit", still_held)
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": WRITER_LOCK_KEY})
                conn.commit()
            except Exception:  # a lost connection has released it already
                conn.invalidate()


WRITER_LOCK_KEY = zlib.crc32(b"imgsearch writer")  # one advisory lock key per database


def one_at_a_time(session: Session, name: str) -> None:
    """Until this transaction ends, other transactions asking for `name` wait: read-then-write steps of two
    clients take turns. SQLite needs nothing: its writers take turns already (one write lock per file)."""
    if name_of(session) == POSTGRESQL:
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(f"imgsearch {name}".encode())})


def backup(engine: Engine, folder: Path | None = None) -> Path | None:
    """A consistent copy of the database: SQLite's online backup API beside the file (safe in WAL mode); for
    PostgreSQL, pg_dump's custom format into `folder` (the library folder), or None when pg_dump is missing."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    if engine.dialect.name == POSTGRESQL:
        return _pg_dump(engine, (folder or Path.cwd()) / f"{engine.url.database}-{stamp}.pgdump")
    if engine.dialect.name != SQLITE:
        raise NotImplementedError(f"backups of {engine.dialect.name} databases")
    source = Path(engine.url.database or "")
    copy = source.with_name(f"{source.name}.bak-{stamp}")
    src, dst = sqlite3.connect(source), sqlite3.connect(copy)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return copy


def _pg_dump(engine: Engine, dest: Path) -> Path | None:
    tool = shutil.which("pg_dump")
    if tool is None:
        return None
    libpq_url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    done = subprocess.run([tool, "-F", "c", "-f", str(dest), "-d", libpq_url], capture_output=True, text=True,
                          timeout=24 * 3600)
    if done.returncode != 0:
        dest.unlink(missing_ok=True)
        raise DatabaseError(f"pg_dump could not back up {describe(engine)}: {done.stderr.strip()[:300]}. Back it up "
                            "another way, then run `imgsearch db upgrade {param:no_backup}`.")
    return dest
