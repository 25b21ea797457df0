"""duplicates: hashes, pair cache, scans, action journal

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 01:01:37.695694
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dup_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('target', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('undone_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dup_actions'))
    )
    op.create_table('dup_action_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('action_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=True),
    sa.Column('src', sa.Text(), nullable=False),
    sa.Column('dest', sa.Text(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('mtime_ns', sa.Integer(), nullable=False),
    sa.Column('mode', sa.Integer(), nullable=False),
    sa.Column('full_hash', sa.String(length=64), nullable=False),
    sa.Column('vectors', sa.Text(), nullable=True),
    sa.Column('restored_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['action_id'], ['dup_actions.id'], name=op.f('fk_dup_action_items_action_id_dup_actions'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dup_action_items'))
    )
    with op.batch_alter_table('dup_action_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dup_action_items_action_id'), ['action_id'], unique=False)

    op.create_table('dup_pairs',
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('a', sa.Integer(), nullable=False),
    sa.Column('b', sa.Integer(), nullable=False),
    sa.Column('cosine', sa.Float(), nullable=False),
    sa.Column('hamming', sa.Integer(), nullable=True),
    sa.Column('transform', sa.Integer(), nullable=True),
    sa.Column('fine', sa.Integer(), nullable=True),
    sa.Column('crop', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['a'], ['images.id'], name=op.f('fk_dup_pairs_a_images'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['b'], ['images.id'], name=op.f('fk_dup_pairs_b_images'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_dup_pairs_model_id_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_id', 'a', 'b', name=op.f('pk_dup_pairs'))
    )
    with op.batch_alter_table('dup_pairs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dup_pairs_b'), ['b'], unique=False)

    op.create_table('dup_scans',
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('thresholds', sa.Text(), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=True),
    sa.Column('pair_floor', sa.Text(), nullable=False),
    sa.Column('scanned_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_dup_scans_model_id_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_id', name=op.f('pk_dup_scans'))
    )
    op.create_table('image_hashes',
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('phashes', sa.LargeBinary(), nullable=True),
    sa.Column('full_hash', sa.String(length=64), nullable=True),
    sa.Column('full_hash_stat', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_image_hashes_image_id_images'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('image_id', name=op.f('pk_image_hashes'))
    )


def downgrade() -> None:
    op.drop_table('image_hashes')
    op.drop_table('dup_scans')
    with op.batch_alter_table('dup_pairs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dup_pairs_b'))

    op.drop_table('dup_pairs')
    with op.batch_alter_table('dup_action_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dup_action_items_action_id'))

    op.drop_table('dup_action_items')
    op.drop_table('dup_actions')
