"""initial schema

Revision ID: 0001
Revises: 
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sweep_base_configs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('pipeline', sa.String(length=64), nullable=False),
    sa.Column('model', sa.Text(), nullable=False),
    sa.Column('weights', sa.String(length=16), nullable=False),
    sa.Column('scheduler', sa.String(length=128), nullable=False),
    sa.Column('steps', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('dtype', sa.String(length=16), nullable=False),
    sa.Column('batch_size', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    op.create_table('sweep_environments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('device', sa.Text(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    op.create_table('sweep_protocols',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('prompt_source', sa.Text(), nullable=False),
    sa.Column('prompts_sha256', sa.String(length=64), nullable=False),
    sa.Column('prompt_count', sa.Integer(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('timing', sa.JSON(), nullable=False),
    sa.Column('scorer', sa.Text(), nullable=False),
    sa.Column('scorer_random', sa.Boolean(), nullable=False),
    sa.Column('prompts', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    op.create_table('sweep_baselines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('base_config_id', sa.Integer(), nullable=False),
    sa.Column('environment_id', sa.Integer(), nullable=False),
    sa.Column('protocol_id', sa.Integer(), nullable=False),
    sa.Column('time', sa.Float(), nullable=False),
    sa.Column('time_spread', sa.Float(), nullable=False),
    sa.Column('warmup_runs', sa.Integer(), nullable=False),
    sa.Column('repeat_max_pixel_diff', sa.Integer(), nullable=True),
    sa.Column('clip_score', sa.Float(), nullable=False),
    sa.Column('image_digests', sa.JSON(), nullable=False),
    sa.Column('n_images', sa.Integer(), nullable=False),
    sa.Column('worker', sa.Text(), nullable=False),
    sa.Column('measured_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['base_config_id'], ['sweep_base_configs.id'], ),
    sa.ForeignKeyConstraint(['environment_id'], ['sweep_environments.id'], ),
    sa.ForeignKeyConstraint(['protocol_id'], ['sweep_protocols.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('base_config_id', 'environment_id', 'protocol_id')
    )
    op.create_table('sweep_searches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('base_config_id', sa.Integer(), nullable=False),
    sa.Column('environment_id', sa.Integer(), nullable=False),
    sa.Column('protocol_id', sa.Integer(), nullable=False),
    sa.Column('strategy', sa.String(length=32), nullable=False),
    sa.Column('max_loss', sa.Float(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('evaluated', sa.Integer(), nullable=False),
    sa.Column('space_size', sa.Integer(), nullable=False),
    sa.Column('stop', sa.Text(), nullable=False),
    sa.Column('best_setting_key', sa.Text(), nullable=True),
    sa.Column('study_name', sa.Text(), nullable=True),
    sa.Column('log', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['base_config_id'], ['sweep_base_configs.id'], ),
    sa.ForeignKeyConstraint(['environment_id'], ['sweep_environments.id'], ),
    sa.ForeignKeyConstraint(['protocol_id'], ['sweep_protocols.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('base_config_id', 'environment_id', 'protocol_id', 'strategy', 'max_loss')
    )
    op.create_table('sweep_trials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('base_config_id', sa.Integer(), nullable=False),
    sa.Column('environment_id', sa.Integer(), nullable=False),
    sa.Column('protocol_id', sa.Integer(), nullable=False),
    sa.Column('setting_key', sa.Text(), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('baseline_id', sa.Integer(), nullable=True),
    sa.Column('time', sa.Float(), nullable=True),
    sa.Column('time_spread', sa.Float(), nullable=True),
    sa.Column('paired_baseline_time', sa.Float(), nullable=True),
    sa.Column('speedup', sa.Float(), nullable=True),
    sa.Column('ci_half_width', sa.Float(), nullable=True),
    sa.Column('repeats', sa.Integer(), nullable=True),
    sa.Column('warmup_runs', sa.Integer(), nullable=True),
    sa.Column('confirmed_speedup', sa.Float(), nullable=True),
    sa.Column('confirmed_ci_half_width', sa.Float(), nullable=True),
    sa.Column('confirmed_repeats', sa.Integer(), nullable=True),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('clip_score', sa.Float(), nullable=True),
    sa.Column('score_loss', sa.Float(), nullable=True),
    sa.Column('image_deviation', sa.Float(), nullable=True),
    sa.Column('n_images', sa.Integer(), nullable=True),
    sa.Column('patched_modules', sa.Integer(), nullable=True),
    sa.Column('worker', sa.Text(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['base_config_id'], ['sweep_base_configs.id'], ),
    sa.ForeignKeyConstraint(['baseline_id'], ['sweep_baselines.id'], ),
    sa.ForeignKeyConstraint(['environment_id'], ['sweep_environments.id'], ),
    sa.ForeignKeyConstraint(['protocol_id'], ['sweep_protocols.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('base_config_id', 'environment_id', 'protocol_id', 'setting_key')
    )


def downgrade() -> None:
    op.drop_table('sweep_trials')
    op.drop_table('sweep_searches')
    op.drop_table('sweep_baselines')
    op.drop_table('sweep_protocols')
    op.drop_table('sweep_environments')
    op.drop_table('sweep_base_configs')

