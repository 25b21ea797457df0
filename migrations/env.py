"""Alembic environment: runs in-process on the connection imgsearch.store.engine hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from imgsearch.store.orm import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # `alembic` CLI use by developers: -x db=path/to/library.db (or a database URL)
        target = context.get_x_argument(as_dictionary=True)['db']
        url = target if "://" in target else f"sqlite:///{target}"
        with create_engine(url).connect() as conn:
            _run(conn)
    else:
        _run(connection)


def _run(connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things; batch mode copies the table instead (PostgreSQL ALTERs).
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
