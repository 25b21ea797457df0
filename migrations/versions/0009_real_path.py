"""images: the file's resolved path (symbolic links followed) when it was indexed

A photo reached through a link that leads out of the indexed folders is served only while its file still resolves
to the same place.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 11:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('real_path', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_column('real_path')
