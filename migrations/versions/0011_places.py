"""images: where a photo was taken, in words, and its date as one indexed column

`place` and `country`: the nearest town and its country, from the GPS position (offline: imgsearch.places), filled
by the next `imgsearch index`. `shot_at`: the date taken, else the file's modification time (UTC), kept with the
row (filled here) so that date filters, the timeline's months and pages read an index instead of computing it for
every photo.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 17:20:00
"""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('place', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('country', sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column('shot_at', sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_images_country'), ['country'], unique=False)
        batch_op.create_index('ix_images_status_shot_at', ['status', 'shot_at'], unique=False)
    images = sa.table('images', sa.column('id', sa.BigInteger()), sa.column('taken_at', sa.DateTime()),
                      sa.column('mtime_ns', sa.BigInteger()), sa.column('shot_at', sa.DateTime()))
    bind = op.get_bind()
    rows = bind.execute(sa.select(images.c.id, images.c.taken_at, images.c.mtime_ns)).all()
    for start in range(0, len(rows), 10_000):  # the same date as the store computes for a new row (photo_date)
        bind.execute(images.update().where(images.c.id == sa.bindparam('row_id')).values(shot_at=sa.bindparam('when')),
                     [{'row_id': i, 'when': taken or datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc)
                       .replace(tzinfo=None)} for i, taken, mtime_ns in rows[start:start + 10_000]])


def downgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_index('ix_images_status_shot_at')
        batch_op.drop_index(batch_op.f('ix_images_country'))
        batch_op.drop_column('shot_at')
        batch_op.drop_column('country')
        batch_op.drop_column('place')
