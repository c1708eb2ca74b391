"""speed trials record the pairs of their first estimate and the spread of its log speed-ups, so a row's first
estimates are judged by the row's pooled noise rather than each by its own few pairs

Revision ID: 0010
Revises: 0009

Rows stored before this revision get no pairs or spread (their passes' seconds were not kept): they keep the
interval they were stored with and take no part in their row's pool.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sweep_speed_trials") as batch:
        batch.add_column(sa.Column("first_pairs", sa.Integer, nullable=True))
        batch.add_column(sa.Column("first_log_sd", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sweep_speed_trials") as batch:
        batch.drop_column("first_log_sd")
        batch.drop_column("first_pairs")
