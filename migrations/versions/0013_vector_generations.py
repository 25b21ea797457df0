"""Indexes on (model_id, generation) of embeddings and frames: the vectors written since an index's generation are
read on every search after an indexer's commit (the index is brought up to date); without them that read walked
every vector row of the model (reading their blobs' pages).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 21:20:00
"""
from __future__ import annotations

from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('embeddings', schema=None) as batch_op:
        batch_op.create_index('ix_embeddings_model_id_generation', ['model_id', 'generation', 'image_id'],
                              unique=False)
    with op.batch_alter_table('frames', schema=None) as batch_op:
        batch_op.create_index('ix_frames_model_id_generation', ['model_id', 'generation', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('frames', schema=None) as batch_op:
        batch_op.drop_index('ix_frames_model_id_generation')
    with op.batch_alter_table('embeddings', schema=None) as batch_op:
        batch_op.drop_index('ix_embeddings_model_id_generation')
