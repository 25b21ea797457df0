"""PostgreSQL: 64-bit byte counts and nanosecond times (SQLite's INTEGER is 64-bit already: nothing to do there)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 14:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

WIDE = (('images', 'size'), ('images', 'mtime_ns'), ('dup_action_items', 'size'), ('dup_action_items', 'mtime_ns'))


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table, column in WIDE:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=False)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    for table, column in WIDE:
        # A value past 32 bits (every nanosecond time is one; a file over 2 GB) cannot go back to INTEGER ("integer
        # out of range" aborted the downgrade): such a column stays BIGINT, which the schema before this revision
        # reads and writes alike. Columns whose values fit are narrowed as they were.
        biggest = bind.execute(sa.text(f'SELECT max(abs({column})) FROM {table}')).scalar()
        if biggest is None or biggest < 2**31:
            op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=False)
