"""dup_pairs moves to a file per model in the library's folder (dups/pairs-model-N.npz)

Millions of candidate pairs took longer to write and read back as rows than the scan that found them. The cache
leaves the database with the scan state that described it (dup_scans.generation and pair_floor): the next `dups`
after this upgrade (or after a downgrade) is a full scan, as on a new library. Nothing else is lost: the pairs are
found again from the vectors and fingerprints.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 14:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('dup_pairs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dup_pairs_b'))
    op.drop_table('dup_pairs')
    with op.batch_alter_table('dup_scans', schema=None) as batch_op:
        batch_op.drop_column('generation')
        batch_op.drop_column('pair_floor')


def downgrade() -> None:
    with op.batch_alter_table('dup_scans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('generation', sa.Integer(), nullable=True))  # NULL: never scanned, a full scan
        batch_op.add_column(sa.Column('pair_floor', sa.Text(), nullable=False, server_default='{}'))
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
