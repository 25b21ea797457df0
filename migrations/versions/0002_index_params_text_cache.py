"""index parameters, vector generations, text cache

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 23:56:41.254754
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('text_vectors',
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_text_vectors_model_id_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_id', 'text', name=op.f('pk_text_vectors'))
    )
    with op.batch_alter_table('text_vectors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_text_vectors_used_at'), ['used_at'], unique=False)

    with op.batch_alter_table('embeddings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('generation', sa.Integer(), server_default='0', nullable=False))

    with op.batch_alter_table('index_builds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('params', sa.Text(), server_default='{}', nullable=False))
        batch_op.add_column(sa.Column('recall_at_10', sa.Double(), nullable=True))
        batch_op.add_column(sa.Column('trained_count', sa.Integer(), server_default='0', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('index_builds', schema=None) as batch_op:
        batch_op.drop_column('trained_count')
        batch_op.drop_column('recall_at_10')
        batch_op.drop_column('params')

    with op.batch_alter_table('embeddings', schema=None) as batch_op:
        batch_op.drop_column('generation')

    with op.batch_alter_table('text_vectors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_text_vectors_used_at'))

    op.drop_table('text_vectors')
