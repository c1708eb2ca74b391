"""work queue with leases

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sweep_tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('base_config_id', sa.Integer(), nullable=False),
    sa.Column('environment_id', sa.Integer(), nullable=False),
    sa.Column('protocol_id', sa.Integer(), nullable=False),
    sa.Column('setting_key', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('lease_owner', sa.Text(), nullable=True),
    sa.Column('lease_expires_at', sa.Float(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['base_config_id'], ['sweep_base_configs.id'], ),
    sa.ForeignKeyConstraint(['environment_id'], ['sweep_environments.id'], ),
    sa.ForeignKeyConstraint(['protocol_id'], ['sweep_protocols.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('base_config_id', 'environment_id', 'protocol_id', 'setting_key')
    )
    with op.batch_alter_table('sweep_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_sweep_tasks_claim', ['environment_id', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sweep_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_sweep_tasks_claim')

    op.drop_table('sweep_tasks')

