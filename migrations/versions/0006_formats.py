"""every format: video frames (their own vectors), a video's duration

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 13:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('duration_ms', sa.Integer(), nullable=True))
    op.create_table(
        'frames',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('image_id', sa.Integer(), nullable=False),
        sa.Column('model_id', sa.Integer(), nullable=False),
        sa.Column('t_ms', sa.Integer(), nullable=False),
        sa.Column('vector', sa.LargeBinary(), nullable=False),
        sa.Column('generation', sa.Integer(), server_default='0', nullable=False),
        sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_frames_image_id_images'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_frames_model_id_models'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_frames')),
    )
    op.create_index('ix_frames_image_id_model_id_t_ms', 'frames', ['image_id', 'model_id', 't_ms'], unique=True)
    op.create_index('ix_frames_model_id', 'frames', ['model_id'], unique=False)
    # files skipped only because no decoder read their format (HEIC, AVIF, videos...) are tried again
    op.execute("UPDATE images SET mtime_ns = -1 WHERE status = 'skipped' AND skip_reason LIKE 'not an image%'")


def downgrade() -> None:
    op.drop_index('ix_frames_model_id', table_name='frames')
    op.drop_index('ix_frames_image_id_model_id_t_ms', table_name='frames')
    op.drop_table('frames')
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_column('duration_ms')
