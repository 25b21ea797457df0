"""Everything that differs between the databases a library can live in (SQLite; PostgreSQL next).

The query modules speak portable SQLAlchemy; what cannot be portable is asked of this module:
connection setup, upserts, dates computed in SQL, the bound-parameter limit, lock waits, backups.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Engine, event, func, text
from sqlalchemy.orm import Session

from imgsearch.errors import DatabaseError

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


def configure(engine: Engine, read_only: bool = False) -> None:
    """Per-connection settings: SQLite gets WAL (readers never wait for a writer), foreign keys, a busy wait;
    a damaged database file becomes a DatabaseError that says so, wherever a statement meets it."""
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
    def _damaged(context) -> None:  # noqa: ANN001 (sqlalchemy ExceptionContext)
        orig = context.original_exception
        if isinstance(orig, sqlite3.DatabaseError) and any(m in str(orig) for m in DAMAGED):
            raise DatabaseError(damaged_message(engine, orig)) from orig


DAMAGED = ("malformed", "file is not a database", "disk I/O error")


def describe(engine: Engine) -> str:
    """The database as a user knows it: a file path, or the server URL without its password."""
    if engine.dialect.name == SQLITE:
        return (engine.url.database or "").removeprefix("file:")
    return engine.url.render_as_string(hide_password=True)


def damaged_message(engine: Engine, reason: object) -> str:
    return (f"{describe(engine)} is not a readable SQLite database ({reason}). Restore it from a backup "
            "(library.db.bak-* beside it), or move the library folder away and run `imgsearch index` again: "
            "your photos are not touched.")


def connect_args(url: str) -> dict:
    return {"timeout": BUSY_TIMEOUT_MS / 1000} if url.startswith(SQLITE) else {}


def _insert(session: Session, table):  # noqa: ANN001, ANN202 (a dialect's INSERT with ON CONFLICT)
    if name_of(session) == POSTGRESQL:
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def upsert(session: Session, table, rows: Sequence[dict], keys: Sequence, update: Sequence[str],  # noqa: ANN001
           batch: int = 150) -> None:
    """Insert rows; a row whose `keys` exist already replaces the `update` columns."""
    for part in chunks(list(rows), batch):
        stmt = _insert(session, table).values(list(part))
        session.execute(stmt.on_conflict_do_update(index_elements=list(keys),
                                                   set_={c: stmt.excluded[c] for c in update}))


def insert_missing(session: Session, table, rows: Sequence[dict], batch: int = 150) -> None:  # noqa: ANN001
    """Insert rows, leaving alone any whose primary key exists already."""
    for part in chunks(list(rows), batch):
        session.execute(_insert(session, table).values(list(part)).on_conflict_do_nothing())


def taken_or_file_time(session: Session, taken_at, mtime_ns):  # noqa: ANN001, ANN201 (SQL expressions)
    """SQL: the date taken, else the file's modification time (UTC), comparable with `sql_datetime`."""
    if name_of(session) == POSTGRESQL:
        file_time = func.timezone("UTC", func.to_timestamp(mtime_ns / 1_000_000_000))
        return func.coalesce(taken_at, file_time)
    # SQLite keeps datetimes as ISO text: compare 'YYYY-MM-DD HH:MM:SS' strings
    return func.coalesce(func.substr(taken_at, 1, 19), func.datetime(mtime_ns / 1_000_000_000, "unixepoch"))


def sql_datetime(session: Session, when: datetime):  # noqa: ANN201 (a bound value)
    """A naive datetime in the form `taken_or_file_time` compares with."""
    if name_of(session) == POSTGRESQL:
        return when
    return when.isoformat(sep=" ", timespec="seconds")  # years below 1000 padded, so text comparison holds


@contextmanager
def lock_wait(session: Session, ms: int) -> Iterator[None]:
    """Statements of this session wait at most `ms` for another writer's lock (then fail: OperationalError).

    Leave the block before the session commits: on SQLite the setting belongs to the pooled connection.
    """
    if name_of(session) == POSTGRESQL:
        session.execute(text(f"SET LOCAL lock_timeout = {int(ms)}"))  # ends with the transaction
        yield
        return
    raw = session.connection().connection.dbapi_connection  # the pooled connection itself keeps the setting
    raw.execute(f"PRAGMA busy_timeout={int(ms)}")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def backup(engine: Engine) -> Path:
    """A consistent copy of the database beside it (SQLite's online backup API: safe in WAL mode)."""
    if engine.dialect.name != SQLITE:
        raise NotImplementedError(f"backups of {engine.dialect.name} databases")
    source = Path(engine.url.database or "")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    copy = source.with_name(f"{source.name}.bak-{stamp}")
    src, dst = sqlite3.connect(source), sqlite3.connect(copy)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return copy
