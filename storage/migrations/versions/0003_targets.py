"""targets

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sweep_targets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('base_config_id', sa.Integer(), nullable=False),
    sa.Column('environment_id', sa.Integer(), nullable=False),
    sa.Column('protocol_id', sa.Integer(), nullable=False),
    sa.Column('max_loss', sa.Float(), nullable=False),
    sa.Column('difficulty', sa.String(length=64), nullable=False),
    sa.Column('factor', sa.Float(), nullable=True),
    sa.Column('target', sa.Float(), nullable=False),
    sa.Column('upper_bound', sa.Float(), nullable=True),
    sa.Column('trial_id', sa.Integer(), nullable=True),
    sa.Column('origin', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['base_config_id'], ['sweep_base_configs.id'], ),
    sa.ForeignKeyConstraint(['environment_id'], ['sweep_environments.id'], ),
    sa.ForeignKeyConstraint(['protocol_id'], ['sweep_protocols.id'], ),
    sa.ForeignKeyConstraint(['trial_id'], ['sweep_trials.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('base_config_id', 'environment_id', 'protocol_id', 'max_loss', 'difficulty')
    )


def downgrade() -> None:
    op.drop_table('sweep_targets')
