"""safe duplicates: journal item states, folders an action created, per-model similar calibration

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:00:00
"""
from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# Until 0004 every threshold was stored once any was given; from 0005 only the ones a user gave are.
OLD_DEFAULTS = {"near_hamming": 10, "near_fine": 40, "near_crop": 56, "near_cosine": 0.5, "edited_cosine": 0.98,
                "similar_cosine": 0.95}


def upgrade() -> None:
    with op.batch_alter_table('dup_action_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state', sa.String(length=16), nullable=False, server_default='done'))
    op.execute("UPDATE dup_action_items SET state = 'restored' WHERE restored_at IS NOT NULL")
    with op.batch_alter_table('dup_actions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('created_dirs', sa.Text(), nullable=True))
    with op.batch_alter_table('dup_scans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('calibration', sa.Text(), nullable=True))
    conn = op.get_bind()
    for model_id, thresholds in conn.execute(sa.text("SELECT model_id, thresholds FROM dup_scans")).all():
        given = {k: v for k, v in json.loads(thresholds or "{}").items() if OLD_DEFAULTS.get(k) != v}
        conn.execute(sa.text("UPDATE dup_scans SET thresholds = :t WHERE model_id = :m"),
                     {"t": json.dumps(given, sort_keys=True), "m": model_id})


def downgrade() -> None:
    with op.batch_alter_table('dup_scans', schema=None) as batch_op:
        batch_op.drop_column('calibration')
    with op.batch_alter_table('dup_actions', schema=None) as batch_op:
        batch_op.drop_column('created_dirs')
    with op.batch_alter_table('dup_action_items', schema=None) as batch_op:
        batch_op.drop_column('state')
