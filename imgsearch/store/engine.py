"""Engines and sessions for a database URL, the schema revision check, and in-process Alembic upgrades."""

from __future__ import annotations

from pathlib import Path

from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, inspect, make_url, text
from sqlalchemy.exc import DatabaseError as SADatabaseError
from sqlalchemy.orm import Session, sessionmaker

import migrations
from imgsearch.store.orm import Base
from imgsearch.errors import DatabaseError, ReadOnlyError, SchemaOutdatedError, SchemaTooNewError
from imgsearch.store import dialect

if TYPE_CHECKING:
    from alembic.config import Config

# The newest revision under migrations/versions (a test checks it against Alembic's head): an up-to-date library is
# recognised with one SELECT, without importing Alembic (~90 ms of every cold command).
HEAD_REVISION = "0013"


def database_url(target: str | Path, read_only: bool = False) -> str:
    """A URL as given, or the SQLite URL of a file path (opened read-only and unchanging when asked: a library on
    a read-only disk can still be searched)."""
    text = str(target)
    if "://" in text:
        return text
    if read_only:
        path = Path(text).absolute()
        wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
        if wal.is_file() and wal.stat().st_size > 0:  # committed work a killed writer left unmerged: read it too
            if not shm.is_file():
                raise ReadOnlyError(f"{path} has committed changes in {wal.name} that SQLite can only read with write "
                                    "access to the folder: make it writable once (the next search merges them), or "
                                    "copy the folder to a writable disk.", "library")
            return f"sqlite:///file:{path}?mode=ro&uri=true"  # SQLite reads a WAL through a read-only -shm (>= 3.22)
        return f"sqlite:///file:{path}?mode=ro&immutable=1&uri=true"
    return f"sqlite:///{Path(text)}"


def make_engine(target: str | Path, read_only: bool = False) -> Engine:
    """An engine for a database URL or a SQLite file, with the dialect's per-connection settings."""
    url = database_url(target, read_only)
    engine = create_engine(url, **dialect.engine_options(url))
    dialect.configure(engine, read_only)
    return engine


def public_url(url: str) -> str:
    """A database URL without its password: what may be shown, logged or written to the manifest."""
    return make_url(url)._replace(password=None).render_as_string(hide_password=False)  # set(password=None) keeps it


def is_default_sqlite(url: str, db_file: Path) -> bool:
    """Whether a URL names this SQLite file (a library's own database)."""
    parsed = make_url(url)
    return parsed.get_backend_name() == dialect.SQLITE and Path(parsed.database or "").absolute() == db_file.absolute()


def check_empty(engine: Engine) -> None:
    """Refuse a database that holds tables but no imgsearch library: never write into somebody else's data."""
    try:
        tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
    except SADatabaseError as exc:
        raise dialect.database_error(engine, exc.orig) from exc
    if tables:
        raise DatabaseError(f"{dialect.describe(engine)} holds other tables ({', '.join(sorted(tables)[:5])}) and no "
                            "imgsearch library: give an empty database (createdb NAME) for a new library.")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def reading_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for a few reads that write nothing, each statement on its own (autocommit): no BEGIN and ROLLBACK
    round trips on PostgreSQL. They see what a transaction would: PostgreSQL's default isolation (read committed)
    gives each statement its own snapshot anyway, and SQLite's driver begins transactions for writes only."""
    return sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)


def _alembic_config() -> "Config":
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return cfg


def head_revision() -> str:
    """The newest schema revision this code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision stamped in the DB, or None for a DB without imgsearch tables."""
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SADatabaseError as exc:
        raise dialect.database_error(engine, exc.orig) from exc


def _alembic(engine: Engine, command_name: str, revision: str, **options: object) -> None:
    """Run one of Alembic's commands (upgrade, downgrade, stamp) in-process, on this engine, in one transaction."""
    from alembic import command

    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, command_name)(cfg, revision, **options)


def upgrade_to_head(engine: Engine, revision: str = "head") -> None:
    """Apply migrations in-process on this engine."""
    _alembic(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Apply down-migrations in-process (used by tests and by developers)."""
    _alembic(engine, "downgrade", revision)


def _schema_is_head(engine: Engine) -> bool:
    """Whether the database's tables, columns and indexes are those this version writes, whatever its revision row
    says (Alembic's comparison of the live schema with the models)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return not compare_metadata(MigrationContext.configure(conn), Base.metadata)


def _version_rows(engine: Engine) -> list[str] | None:
    """The rows of alembic_version by one SELECT; None when it cannot be read that way (no such table)."""
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all())
    except SADatabaseError:
        return None


def _stamped(engine: Engine) -> str | None:
    """The revision in alembic_version by one SELECT; None when it cannot be read that way (Alembic then looks)."""
    rows = _version_rows(engine)
    return rows[0] if rows is not None and len(rows) == 1 else None


def check_schema(engine: Engine) -> None:
    """Raise if the DB's schema is not the one this code writes; fixes are named in the message."""
    if _stamped(engine) == HEAD_REVISION:
        return
    from alembic.script import ScriptDirectory

    rows = _version_rows(engine) or []
    if len(rows) > 1:  # a stale row beside the real one (a hand edit, a copy): the upgrade settles it
        raise SchemaOutdatedError(f"{dialect.describe(engine)} holds {len(rows)} schema revisions ({', '.join(rows)}) "
                                  "where there is one. Run `imgsearch db upgrade` (it backs the database up first).")
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    db = dialect.describe(engine)
    script = ScriptDirectory.from_config(_alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if current is None and set(inspect(engine).get_table_names()) - {"alembic_version"}:
        raise DatabaseError(f"{db} has tables but no imgsearch schema revision: it is not an imgsearch library.")
    if current is not None and current not in known:
        raise SchemaTooNewError(
            f"{db} was written by a newer imgsearch (schema {current}, this version knows up to {head}). "
            "Use this library with that newer imgsearch (in its clone: git pull, then pip install . again); PyPI's "
            "'imgsearch' is another project."
        )
    raise SchemaOutdatedError(
        f"{db} uses an older schema ({current or 'none'}; this version needs {head}). "
        "Run `imgsearch db upgrade` (it backs the database up first)."
    )


def backup(target: str | Path | Engine, folder: Path | None = None) -> Path | None:
    """A consistent copy of the database (beside a SQLite file; a pg_dump file in `folder` for a server);
    None when no backup tool is at hand (PostgreSQL without pg_dump)."""
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        return dialect.backup(engine, folder)
    finally:
        if engine is not target:
            engine.dispose()


def upgrade(target: str | Path, folder: Path | None = None,
            make_backup: bool = True) -> tuple[str | None, str, Path | None]:
    """Back the database up (unless told not to), then migrate it to head: (revision before, revision after,
    backup or None)."""
    from alembic.util import CommandError

    engine = make_engine(target)
    try:
        rows = _version_rows(engine) or []
        before = "+".join(rows) if len(rows) > 1 else current_revision(engine)
        if before == head_revision() and len(rows) <= 1:
            return before, before, None
        copy = dialect.backup(engine, folder) if make_backup else None
        try:
            if len(rows) > 1:
                raise CommandError(f"{len(rows)} rows in alembic_version")
            upgrade_to_head(engine)
        except (SADatabaseError, CommandError) as exc:
            if not _schema_is_head(engine):
                saved = f"; the backup made first is {copy}" if copy is not None else ""
                raise DatabaseError(f"upgrading {dialect.describe(engine)} from schema {before} failed "
                                    f"({str(getattr(exc, 'orig', exc)).splitlines()[0]}): the step that failed changed "
                                    f"nothing{saved}. Report this with the message.") from exc
            # the tables are this version's already and only the revision row was behind (an interrupted upgrade,
            # a copy, a hand edit): the row is brought up to date; no table is touched
            _alembic(engine, "stamp", "head", purge=True)  # purge: whatever rows were there, one: head
        return before, head_revision(), copy
    finally:
        engine.dispose()
