"""tasks carry an estimated cost (seconds per image of their configuration), so workers start the most expensive
work first

Revision ID: 0009
Revises: 0008

Tasks queued before this revision get 0: they keep their order among themselves (by id), as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sweep_tasks") as batch:
        batch.add_column(sa.Column("cost", sa.Float, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("sweep_tasks") as batch:
        batch.drop_column("cost")
