"""environment key without accelerator packages; a speed record keyed by its own packages' versions

Before: an environment's key held the device, Python and six libraries, among them the packages of two
acceleration methods (DeepCache, tomesd), so installing or upgrading any method's package changed the key of
every result. Now:

- an environment's key is the device, Python, torch, diffusers and transformers; each stored environment's
  key is rewritten to that form from its stored details (imported environments keep theirs). Where two old
  environments become one key (they differed only in a method's package), the first takes the new key and
  the others keep their old one: their results stay, as separate environments. The old key is kept in the
  details as ``key_before_0005``;
- each speed record gets ``packages_key``: the versions of exactly the packages its setting's methods declare
  beyond those libraries, read from its environment's details ("unknown" for a package the old key did not
  record, so that such a speed is measured again under a known version; the old record stays). The method →
  packages table below is this release's, frozen here.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

CORE = ("torch", "diffusers", "transformers")
METHOD_PACKAGES = {"deepcache": ("DeepCache",), "tome": ("tomesd",), "tgate": ("tgate",), "cache_dit": ("cache-dit",),
                   "pab": ("diffusers",), "fastercache": ("diffusers",)}
IMPORTED = "imported:"
OLD_KEY = ('speed_config_id', 'environment_id', 'timing_protocol_id', 'setting_key', 'weights_key')
NEW_KEY = (*OLD_KEY, 'packages_key')
UNIQUE = "uq_sweep_speed_trials_key"


def _canonical(value: object) -> str:  # search_space.keys.canonical_json as of this release
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _loads(value: object) -> dict:
    return json.loads(value) if isinstance(value, str) else dict(value or {})


def _swap_unique(old: tuple[str, ...] | None, new: tuple[str, ...]) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        convention = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
        with op.batch_alter_table('sweep_speed_trials', recreate="always", naming_convention=convention) as batch:
            for uc in sa.inspect(bind).get_unique_constraints('sweep_speed_trials'):
                batch.drop_constraint(uc["name"] or "uq_sweep_speed_trials_speed_config_id", type_="unique")
            batch.create_unique_constraint(UNIQUE if new == NEW_KEY else None, list(new))
        return
    for uc in sa.inspect(bind).get_unique_constraints('sweep_speed_trials'):
        op.drop_constraint(uc["name"], 'sweep_speed_trials', type_="unique")
    op.create_unique_constraint(UNIQUE if new == NEW_KEY else "sweep_speed_trials_old_key", 'sweep_speed_trials', list(new))


def upgrade() -> None:
    bind = op.get_bind()
    environments = sa.table('sweep_environments', sa.column('id', sa.Integer), sa.column('key', sa.Text),
                            sa.column('device', sa.Text), sa.column('details', sa.JSON))
    rows = bind.execute(sa.select(environments).order_by(environments.c.id)).all()
    details_of = {r.id: _loads(r.details) for r in rows}
    imported = {r.id for r in rows if r.key.startswith(IMPORTED)}
    taken = {r.key for r in rows}
    for r in rows:
        details = details_of[r.id]
        if r.id in imported or not all(lib in details for lib in (*CORE, "python")):
            continue
        key = _canonical({"device": r.device, **{lib: details[lib] for lib in (*CORE, "python")}})
        if key == r.key or key in taken:
            continue
        taken.add(key)
        bind.execute(environments.update().where(environments.c.id == r.id).values(
            key=key, details={**details, "key_before_0005": r.key}))

    op.add_column('sweep_speed_trials', sa.Column('packages_key', sa.Text(), nullable=False, server_default=''))
    trials = sa.table('sweep_speed_trials', sa.column('id', sa.Integer), sa.column('environment_id', sa.Integer),
                      sa.column('settings', sa.JSON), sa.column('packages_key', sa.Text))
    for t in bind.execute(sa.select(trials.c.id, trials.c.environment_id, trials.c.settings)).all():
        if t.environment_id in imported:
            continue
        packages = sorted({p for method in _loads(t.settings) for p in METHOD_PACKAGES.get(method, ())} - set(CORE))
        if packages:
            details = details_of.get(t.environment_id, {})
            key = _canonical({p: details.get(p, "unknown") for p in packages})
            bind.execute(trials.update().where(trials.c.id == t.id).values(packages_key=key))
    _swap_unique(OLD_KEY, NEW_KEY)


def downgrade() -> None:
    bind = op.get_bind()
    trials = sa.table('sweep_speed_trials', sa.column('id', sa.Integer), *(sa.column(c) for c in NEW_KEY))
    duplicates = bind.execute(sa.select(*(trials.c[c] for c in OLD_KEY)).group_by(*(trials.c[c] for c in OLD_KEY))
                              .having(sa.func.count() > 1)).first()
    if duplicates is not None:
        raise RuntimeError("0005: speeds of several package versions are stored for one setting; restore a backup to go back")
    _swap_unique(NEW_KEY, OLD_KEY)
    with op.batch_alter_table('sweep_speed_trials') as batch:
        batch.drop_column('packages_key')
    environments = sa.table('sweep_environments', sa.column('id', sa.Integer), sa.column('key', sa.Text),
                            sa.column('details', sa.JSON))
    for r in bind.execute(sa.select(environments)).all():
        details = _loads(r.details)
        if "key_before_0005" in details:
            old = details.pop("key_before_0005")
            bind.execute(environments.update().where(environments.c.id == r.id).values(key=old, details=details))
