"""Copying a library's database into another (its SQLite file to a PostgreSQL server, or back): every table in
dependency order, streamed in batches inside one transaction on the target (a failure leaves it empty), then
verified by row counts and a checksum of every vector. The source is only read."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from sqlalchemy import Engine, Table, func, insert, select, text

from imgsearch.errors import DatabaseError
from imgsearch.progress import Progress
from imgsearch.store import dialect
from imgsearch.store import engine as db
from imgsearch.store.orm import Base, Embedding, Frame, TextVector

BATCH = 2_000
# what the checksum covers: every vector, in a stable order, with what it belongs to
VECTOR_TABLES = ((Embedding, (Embedding.model_id, Embedding.image_id)), (Frame, (Frame.id,)),
                 (TextVector, (TextVector.model_id, TextVector.text)))


@dataclass(frozen=True)
class CopyReport:
    source: str
    target: str
    tables: int
    rows: int
    vectors: int  # vectors whose checksum matched
    seconds: float


def copy_database(source: Engine, target: Engine, progress: Progress) -> CopyReport:
    """Copy everything from `source` (an imgsearch database at this version's schema) into the empty `target`."""
    start = time.perf_counter()
    db.check_schema(source)
    tables = list(Base.metadata.sorted_tables)  # parents before children
    if db.current_revision(target) is not None:
        with target.connect() as conn:
            rows = sum(_row_counts(conn, tables).values())
        if rows or db.current_revision(target) != db.head_revision():
            raise DatabaseError(f"{dialect.describe(target)} holds an imgsearch library already: copy into an empty "
                                "database (createdb NAME, or a new sqlite:///PATH).")
        # the schema and no rows: what a copy stopped before its one transaction committed leaves; fill it now
    else:
        db.check_empty(target)
        db.upgrade_to_head(target)
    with source.connect() as src:
        counts = _row_counts(src, tables)
        progress.stage("copying", sum(counts.values()), unit="row")
        with target.begin() as dst:
            for table in tables:
                _copy_table(src, dst, table, progress)
            if target.dialect.name == dialect.POSTGRESQL:
                _advance_sequences(dst, tables)
    progress.close()
    with target.connect() as check:
        copied = _row_counts(check, tables)
    if copied != counts:
        wrong = {name: (counts[name], copied[name]) for name in counts if counts[name] != copied[name]}
        raise DatabaseError(f"the copy in {dialect.describe(target)} does not match (rows source/copy: {wrong}); "
                            "the library still uses its old database.")
    theirs, n = _vector_checksum(target)
    if _vector_checksum(source) != (theirs, n):
        raise DatabaseError(f"the vectors copied to {dialect.describe(target)} differ from the source's; the library "
                            "still uses its old database.")
    return CopyReport(dialect.describe(source), dialect.describe(target), len(tables), sum(counts.values()), n,
                      time.perf_counter() - start)


def _row_counts(conn, tables: list[Table]) -> dict[str, int]:  # a connection
    return {t.name: conn.execute(select(func.count()).select_from(t)).scalar() or 0 for t in tables}


def _copy_table(src, dst, table: Table, progress: Progress) -> None:  # connections
    rows = src.execution_options(stream_results=True, yield_per=BATCH).execute(
        select(table).order_by(*table.primary_key.columns))
    for part in rows.mappings().partitions(BATCH):
        dst.execute(insert(table), [dict(r) for r in part])
        progress.advance(len(part))


def _advance_sequences(dst, tables: list[Table]) -> None:
    """Rows came with their ids: move each id sequence past them, so the next insert gets a new one."""
    for table in tables:
        pk = list(table.primary_key.columns)
        if len(pk) == 1 and pk[0].autoincrement in (True, "auto") and pk[0].type.python_type is int \
                and not pk[0].foreign_keys:
            dst.execute(text(f"SELECT setval(pg_get_serial_sequence(:t, :c), COALESCE(MAX({pk[0].name}), 1), "
                             f"MAX({pk[0].name}) IS NOT NULL) FROM {table.name}"), {"t": table.name, "c": pk[0].name})


def _vector_checksum(engine: Engine) -> tuple[str, int]:
    """sha256 over every stored vector with its keys, in key order; and how many there are."""
    digest, n = hashlib.sha256(), 0
    with engine.connect() as conn:
        for table, order in VECTOR_TABLES:
            for row in conn.execution_options(stream_results=True, yield_per=BATCH).execute(
                    select(*order, table.vector).order_by(*order)):
                digest.update(repr(tuple(row[:-1])).encode())
                digest.update(bytes(row[-1]))
                n += 1
    return digest.hexdigest(), n
