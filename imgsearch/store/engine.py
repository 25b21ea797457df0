"""SQLite engine and sessions, pragmas, schema revision check and in-process Alembic upgrades."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import DatabaseError as SADatabaseError
from sqlalchemy.orm import Session, sessionmaker

import migrations
from imgsearch.errors import DatabaseError, SchemaOutdatedError, SchemaTooNewError

BUSY_TIMEOUT_MS = 10_000


def make_engine(db_path: Path) -> Engine:
    """An engine whose every connection uses WAL, foreign keys and a busy timeout."""
    engine = create_engine(f"sqlite:///{db_path}", connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        cur = dbapi_conn.cursor()
        # WAL lets searches read while an indexer writes; NORMAL sync is durable at checkpoints in WAL.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.close()

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return cfg


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision stamped in the DB, or None for a DB without imgsearch tables."""
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SADatabaseError as exc:
        raise DatabaseError(
            f"{engine.url.database} is not a readable SQLite database ({exc.orig}). "
            "Restore it from a backup (library.db.bak-*), or move the library folder away and run "
            "`imgsearch index` again: your photos are not touched."
        ) from exc


def upgrade_to_head(engine: Engine, revision: str = "head") -> None:
    """Apply migrations in-process on this engine."""
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Apply down-migrations in-process (used by tests and by developers)."""
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def check_schema(engine: Engine) -> None:
    """Raise if the DB's schema is not the one this code writes; fixes are named in the message."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    db = engine.url.database
    script = ScriptDirectory.from_config(_alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if current is None and set(inspect(engine).get_table_names()) - {"alembic_version"}:
        raise DatabaseError(f"{db} has tables but no imgsearch schema revision: it is not an imgsearch library.")
    if current is not None and current not in known:
        raise SchemaTooNewError(
            f"{db} was written by a newer imgsearch (schema {current}, this version knows up to {head}). "
            "Upgrade imgsearch (pip install -U imgsearch) to use this library."
        )
    raise SchemaOutdatedError(
        f"{db} uses an older schema ({current or 'none'}; this version needs {head}). "
        "Run `imgsearch db upgrade` (it backs the database up first)."
    )


def backup(db_path: Path) -> Path:
    """Copy the DB with SQLite's online backup API (consistent even in WAL mode); returns the copy."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    target = db_path.with_name(f"{db_path.name}.bak-{stamp}")
    src = sqlite3.connect(db_path)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return target
