"""speed trials say why their precise timing stopped: at the target width, below the leader, or at max pairs

Revision ID: 0007
Revises: 0006

Rows timed before this revision get the reason their own numbers and timing protocol imply (the stopping rule
has not changed): as many pairs as the protocol's max → ``max pairs``; an interval within the protocol's target
width → ``target width``; otherwise the timing stopped because its interval fell under the leader's.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

MAX_PAIRS, TARGET_HALF_WIDTH = 40, 0.03  # the defaults of every release before 0007, for a policy that omits them


def upgrade() -> None:
    with op.batch_alter_table("sweep_speed_trials") as batch:
        batch.add_column(sa.Column("precise_stop", sa.String(16), nullable=True))
    bind = op.get_bind()
    trials = sa.table("sweep_speed_trials", sa.column("id", sa.Integer), sa.column("timing_protocol_id", sa.Integer),
                      sa.column("speedup", sa.Float), sa.column("ci_half_width", sa.Float), sa.column("pairs", sa.Integer),
                      sa.column("precise_stop", sa.String))
    protocols = sa.table("sweep_timing_protocols", sa.column("id", sa.Integer), sa.column("policy", sa.JSON))
    policy = {row.id: dict(row.policy or {}) for row in bind.execute(sa.select(protocols.c.id, protocols.c.policy))}
    timed = bind.execute(sa.select(trials.c.id, trials.c.timing_protocol_id, trials.c.ci_half_width, trials.c.pairs)
                         .where(trials.c.speedup.is_not(None))).all()
    for row in timed:
        p = policy.get(row.timing_protocol_id, {})
        max_pairs = int(p.get("max_pairs", MAX_PAIRS))
        width = float(p.get("target_half_width", TARGET_HALF_WIDTH))
        if row.ci_half_width is not None and row.ci_half_width <= width + 1e-12:
            stop = "target width"
        elif row.pairs is not None and row.pairs >= max_pairs:
            stop = "max pairs"
        else:
            stop = "below leader"
        bind.execute(sa.update(trials).where(trials.c.id == row.id).values(precise_stop=stop))


def downgrade() -> None:
    with op.batch_alter_table("sweep_speed_trials") as batch:
        batch.drop_column("precise_stop")
