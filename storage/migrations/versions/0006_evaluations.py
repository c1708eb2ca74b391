"""graded solutions: one row per (task content, solution file SHA-256, environment, grading protocol)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweep_evaluations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("task_id", sa.Text(), nullable=False),
        sa.Column("task_key", sa.String(64), nullable=False),
        sa.Column("solution_sha256", sa.String(64), nullable=False),
        sa.Column("environment_id", sa.Integer(), sa.ForeignKey("sweep_environments.id"), nullable=False),
        sa.Column("protocol_key", sa.Text(), nullable=False),
        sa.Column("difficulty", sa.String(16), nullable=False),
        sa.Column("target", sa.Float(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("failure_reason", sa.String(64), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("solution_path", sa.Text(), nullable=False),
        sa.Column("gt_path", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("task_key", "solution_sha256", "environment_id", "protocol_key"),
    )


def downgrade() -> None:
    op.drop_table("sweep_evaluations")
