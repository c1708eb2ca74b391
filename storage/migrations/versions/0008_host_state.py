"""the host's state with every timing: CPU model and count, CPU and steal seconds per image, the GPU's busy fraction

Revision ID: 0008
Revises: 0007

Speed baselines get ``host``, speed trials ``first_host`` (their first estimate's pass) and ``precise_host``
(their precise timing's pairs). Rows timed before this revision have none (NULL): their state was not recorded.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sweep_speed_baselines") as batch:
        batch.add_column(sa.Column("host", sa.JSON(), nullable=True))
    with op.batch_alter_table("sweep_speed_trials") as batch:
        batch.add_column(sa.Column("first_host", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("precise_host", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sweep_speed_trials") as batch:
        batch.drop_column("precise_host")
        batch.drop_column("first_host")
    with op.batch_alter_table("sweep_speed_baselines") as batch:
        batch.drop_column("host")
