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
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table, column in WIDE:
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=False)
