"""photo_tags: tags a person gives photos (from the web page's selection), beside the model's zero-shot tags

Kept when a photo's file changes (the model's tags describe its old pixels and go; a person's describe the photo).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 18:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('photo_tags',
                    sa.Column('image_id', sa.Integer(), nullable=False),
                    sa.Column('label', sa.Text(), nullable=False),
                    sa.Column('created_at', sa.DateTime(), nullable=False),
                    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_photo_tags_image_id_images'),
                                            ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('image_id', 'label', name=op.f('pk_photo_tags')))
    with op.batch_alter_table('photo_tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_photo_tags_label'), ['label'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('photo_tags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_photo_tags_label'))
    op.drop_table('photo_tags')
