"""images: the place a photo was taken, in words (the nearest town and its country, from its GPS position)

Filled by the next `imgsearch index` for every photo with a GPS position (offline: imgsearch.places); nothing else
changes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 17:20:00
"""
from __future__ import annotations

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
        batch_op.create_index(batch_op.f('ix_images_country'), ['country'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_images_country'))
        batch_op.drop_column('country')
        batch_op.drop_column('place')
