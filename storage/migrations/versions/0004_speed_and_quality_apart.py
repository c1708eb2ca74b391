"""speed and quality measured apart

Every stored result is carried over:

- each base configuration gets its speed configuration (architecture, scheduler, steps, shape, dtype, batch);
- each old protocol becomes a quality protocol (prompts, seeds, scorer: the same key form new runs use, so
  their score losses are reused, not measured again) and a timing protocol marked as the pre-0.2 paired
  protocol (its speed-ups were timed over every prompt, so new timings never mix with them);
- each old baseline and trial becomes a speed record, and, where its score was real quality (pretrained
  weights and a real scorer, or imported), a quality record; random-weight CLIP numbers never were quality
  and are not copied as such;
- targets, searches and queued tasks follow their rows;
- the old tables stay, renamed ``sweep_archive_*``, untouched.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

QUALITY_KEY_VERSION = 1
PRE_SPLIT_TIMING = 2  # the measurement version of the paired protocol before speed and quality were apart


def _key(value: object) -> str:
    # frozen copy of search_space.keys.canonical_json: a migration must not change when the code does
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value


def _create_new_tables() -> dict[str, sa.Table]:
    t: dict[str, sa.Table] = {}
    t["speed_configs"] = op.create_table('sweep_speed_configs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.Text(), nullable=False),
        sa.Column('pipeline', sa.String(length=64), nullable=False),
        sa.Column('scheduler', sa.String(length=128), nullable=False),
        sa.Column('steps', sa.Integer(), nullable=False),
        sa.Column('height', sa.Integer(), nullable=False),
        sa.Column('width', sa.Integer(), nullable=False),
        sa.Column('dtype', sa.String(length=16), nullable=False),
        sa.Column('batch_size', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key'),
    )
    t["quality_protocols"] = op.create_table('sweep_quality_protocols',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.Text(), nullable=False),
        sa.Column('prompt_source', sa.Text(), nullable=False),
        sa.Column('prompts_sha256', sa.String(length=64), nullable=False),
        sa.Column('prompt_count', sa.Integer(), nullable=False),
        sa.Column('seed', sa.Integer(), nullable=False),
        sa.Column('scorer', sa.Text(), nullable=False),
        sa.Column('prompts', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key'),
    )
    t["timing_protocols"] = op.create_table('sweep_timing_protocols',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.Text(), nullable=False),
        sa.Column('images', sa.Integer(), nullable=False),
        sa.Column('policy', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key'),
    )
    t["speed_baselines"] = op.create_table('sweep_speed_baselines',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('speed_config_id', sa.Integer(), nullable=False),
        sa.Column('environment_id', sa.Integer(), nullable=False),
        sa.Column('timing_protocol_id', sa.Integer(), nullable=False),
        sa.Column('time', sa.Float(), nullable=False),
        sa.Column('time_spread', sa.Float(), nullable=False),
        sa.Column('batch_seconds', sa.JSON(), nullable=False),
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('warmup_runs', sa.Integer(), nullable=False),
        sa.Column('image_digests', sa.JSON(), nullable=False),
        sa.Column('repeat_max_pixel_diff', sa.Integer(), nullable=True),
        sa.Column('weights', sa.Text(), nullable=False),
        sa.Column('worker', sa.Text(), nullable=False),
        sa.Column('measured_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['environment_id'], ['sweep_environments.id'], ),
        sa.ForeignKeyConstraint(['speed_config_id'], ['sweep_speed_configs.id'], ),
        sa.ForeignKeyConstraint(['timing_protocol_id'], ['sweep_timing_protocols.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('speed_config_id', 'environment_id', 'timing_protocol_id'),
    )
    t["speed_trials"] = op.create_table('sweep_speed_trials',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('speed_config_id', sa.Integer(), nullable=False),
        sa.Column('environment_id', sa.Integer(), nullable=False),
        sa.Column('timing_protocol_id', sa.Integer(), nullable=False),
        sa.Column('setting_key', sa.Text(), nullable=False),
        sa.Column('settings', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('weights', sa.Text(), nullable=False),
        sa.Column('weights_key', sa.Text(), nullable=False),
        sa.Column('first_speedup', sa.Float(), nullable=True),
        sa.Column('first_ci_half_width', sa.Float(), nullable=True),
        sa.Column('first_source', sa.Text(), nullable=True),
        sa.Column('first_time', sa.Float(), nullable=True),
        sa.Column('first_baseline_time', sa.Float(), nullable=True),
        sa.Column('speedup', sa.Float(), nullable=True),
        sa.Column('ci_half_width', sa.Float(), nullable=True),
        sa.Column('pairs', sa.Integer(), nullable=True),
        sa.Column('time', sa.Float(), nullable=True),
        sa.Column('baseline_time', sa.Float(), nullable=True),
        sa.Column('time_spread', sa.Float(), nullable=True),
        sa.Column('warmup_runs', sa.Integer(), nullable=True),
        sa.Column('precise_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('patched_modules', sa.Integer(), nullable=True),
        sa.Column('worker', sa.Text(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['environment_id'], ['sweep_environments.id'], ),
        sa.ForeignKeyConstraint(['speed_config_id'], ['sweep_speed_configs.id'], ),
        sa.ForeignKeyConstraint(['timing_protocol_id'], ['sweep_timing_protocols.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('speed_config_id', 'environment_id', 'timing_protocol_id', 'setting_key', 'weights_key'),
    )
    t["quality_baselines"] = op.create_table('sweep_quality_baselines',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('base_config_id', sa.Integer(), nullable=False),
        sa.Column('quality_protocol_id', sa.Integer(), nullable=False),
        sa.Column('scores', sa.JSON(), nullable=True),
        sa.Column('clip_score', sa.Float(), nullable=True),
        sa.Column('image_digests', sa.JSON(), nullable=False),
        sa.Column('repeat_max_pixel_diff', sa.Integer(), nullable=True),
        sa.Column('environment_id', sa.Integer(), nullable=False),
        sa.Column('worker', sa.Text(), nullable=False),
        sa.Column('measured_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['base_config_id'], ['sweep_base_configs.id'], ),
        sa.ForeignKeyConstraint(['environment_id'], ['sweep_environments.id'], ),
        sa.ForeignKeyConstraint(['quality_protocol_id'], ['sweep_quality_protocols.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('base_config_id', 'quality_protocol_id'),
    )
    t["quality_trials"] = op.create_table('sweep_quality_trials',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('base_config_id', sa.Integer(), nullable=False),
        sa.Column('quality_protocol_id', sa.Integer(), nullable=False),
        sa.Column('setting_key', sa.Text(), nullable=False),
        sa.Column('settings', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('rejected_at', sa.Float(), nullable=True),
        sa.Column('scores', sa.JSON(), nullable=True),
        sa.Column('prompts_used', sa.Integer(), nullable=True),
        sa.Column('clip_score', sa.Float(), nullable=True),
        sa.Column('score_loss', sa.Float(), nullable=True),
        sa.Column('loss_low', sa.Float(), nullable=True),
        sa.Column('loss_high', sa.Float(), nullable=True),
        sa.Column('image_deviation', sa.Float(), nullable=True),
        sa.Column('environment_id', sa.Integer(), nullable=False),
        sa.Column('worker', sa.Text(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['base_config_id'], ['sweep_base_configs.id'], ),
        sa.ForeignKeyConstraint(['environment_id'], ['sweep_environments.id'], ),
        sa.ForeignKeyConstraint(['quality_protocol_id'], ['sweep_quality_protocols.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('base_config_id', 'quality_protocol_id', 'setting_key'),
    )
    return t


def _create_scoped_tables() -> dict[str, sa.Table]:
    t: dict[str, sa.Table] = {}
    t["searches"] = op.create_table('sweep_searches',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('base_config_id', sa.Integer(), nullable=False),
        sa.Column('environment_id', sa.Integer(), nullable=False),
        sa.Column('quality_protocol_id', sa.Integer(), nullable=False),
        sa.Column('timing_protocol_id', sa.Integer(), nullable=False),
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
        sa.ForeignKeyConstraint(['quality_protocol_id'], ['sweep_quality_protocols.id'], ),
        sa.ForeignKeyConstraint(['timing_protocol_id'], ['sweep_timing_protocols.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('base_config_id', 'environment_id', 'quality_protocol_id', 'timing_protocol_id',
                            'strategy', 'max_loss'),
    )
    t["tasks"] = op.create_table('sweep_tasks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('base_config_id', sa.Integer(), nullable=False),
        sa.Column('environment_id', sa.Integer(), nullable=False),
        sa.Column('quality_protocol_id', sa.Integer(), nullable=False),
        sa.Column('timing_protocol_id', sa.Integer(), nullable=False),
        sa.Column('setting_key', sa.Text(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('measure_quality', sa.Boolean(), nullable=False),
        sa.Column('max_loss', sa.Float(), nullable=False),
        sa.Column('confirm_top', sa.Integer(), nullable=False),
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
        sa.ForeignKeyConstraint(['quality_protocol_id'], ['sweep_quality_protocols.id'], ),
        sa.ForeignKeyConstraint(['timing_protocol_id'], ['sweep_timing_protocols.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('base_config_id', 'environment_id', 'quality_protocol_id', 'timing_protocol_id',
                            'setting_key', 'kind'),
    )
    with op.batch_alter_table('sweep_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_sweep_tasks_claim', ['environment_id', 'status'], unique=False)
    t["targets"] = op.create_table('sweep_targets',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('base_config_id', sa.Integer(), nullable=False),
        sa.Column('quality_protocol_id', sa.Integer(), nullable=False),
        sa.Column('environment_id', sa.Integer(), nullable=False),
        sa.Column('timing_protocol_id', sa.Integer(), nullable=False),
        sa.Column('max_loss', sa.Float(), nullable=False),
        sa.Column('difficulty', sa.String(length=64), nullable=False),
        sa.Column('factor', sa.Float(), nullable=True),
        sa.Column('target', sa.Float(), nullable=False),
        sa.Column('upper_bound', sa.Float(), nullable=True),
        sa.Column('setting_key', sa.Text(), nullable=True),
        sa.Column('origin', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['base_config_id'], ['sweep_base_configs.id'], ),
        sa.ForeignKeyConstraint(['environment_id'], ['sweep_environments.id'], ),
        sa.ForeignKeyConstraint(['quality_protocol_id'], ['sweep_quality_protocols.id'], ),
        sa.ForeignKeyConstraint(['timing_protocol_id'], ['sweep_timing_protocols.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('base_config_id', 'quality_protocol_id', 'environment_id', 'timing_protocol_id',
                            'max_loss', 'difficulty'),
    )
    t["legacy_entries"] = op.create_table('sweep_legacy_entries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('origin', sa.Text(), nullable=False),
        sa.Column('key', sa.Text(), nullable=False),
        sa.Column('value', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('origin', 'key'),
    )
    return t


ARCHIVED = ("sweep_baselines", "sweep_trials", "sweep_protocols", "sweep_searches", "sweep_tasks", "sweep_targets")


def upgrade() -> None:
    connection = op.get_bind()
    # the indexes of the tables about to be archived keep their names; free the one a new table reuses
    with op.batch_alter_table('sweep_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_sweep_tasks_claim')
    for name in ARCHIVED:
        op.rename_table(name, name.replace("sweep_", "sweep_archive_", 1))
    new = _create_new_tables()
    # added in place (SQLite cannot add a NOT NULL column, and rebuilding the table would break the archived
    # tables' foreign keys): every row gets its value below, and sweep always writes one
    if connection.dialect.name == "sqlite":  # SQLite adds a column with its reference, but Alembic will not
        op.execute("ALTER TABLE sweep_base_configs ADD COLUMN speed_config_id INTEGER REFERENCES sweep_speed_configs (id)")
    else:
        op.add_column('sweep_base_configs', sa.Column('speed_config_id', sa.Integer(), nullable=True))
        op.create_foreign_key('fk_sweep_base_configs_speed_config', 'sweep_base_configs', 'sweep_speed_configs',
                              ['speed_config_id'], ['id'])
    new.update(_create_scoped_tables())

    meta = sa.MetaData()
    old = {name: sa.Table(name.replace("sweep_", "sweep_archive_", 1), meta, autoload_with=connection)
           for name in ARCHIVED}
    base_configs = sa.Table("sweep_base_configs", meta, autoload_with=connection)

    # speed configurations
    speed_of: dict[int, int] = {}
    speed_ids: dict[str, int] = {}
    bases = {b.id: b for b in connection.execute(sa.select(base_configs))}
    for b in bases.values():
        fields = {"pipeline": b.pipeline, "scheduler": b.scheduler, "steps": b.steps, "height": b.height,
                  "width": b.width, "dtype": b.dtype, "batch_size": b.batch_size}
        key = _key(fields)
        if key not in speed_ids:
            speed_ids[key] = connection.execute(new["speed_configs"].insert().values(key=key, **fields)).inserted_primary_key[0]
        speed_of[b.id] = speed_ids[key]
        connection.execute(base_configs.update().where(base_configs.c.id == b.id).values(speed_config_id=speed_of[b.id]))

    # protocols → a quality protocol and a (pre-split) timing protocol each
    quality_of: dict[int, int] = {}
    timing_of: dict[int, int] = {}
    quality_ids: dict[str, int] = {}
    timing_ids: dict[str, int] = {}
    real_scorer: dict[int, bool] = {}
    imported: dict[int, bool] = {}
    for p in connection.execute(sa.select(old["sweep_protocols"])):
        is_import = str(p.scorer).startswith("imported:")
        quality_key = p.key if is_import else _key({
            "quality": QUALITY_KEY_VERSION, "prompts_sha256": p.prompts_sha256, "prompt_count": p.prompt_count,
            "seed": p.seed, "scorer": p.scorer})
        if quality_key not in quality_ids:
            quality_ids[quality_key] = connection.execute(new["quality_protocols"].insert().values(
                key=quality_key, prompt_source=p.prompt_source, prompts_sha256=p.prompts_sha256,
                prompt_count=p.prompt_count, seed=p.seed, scorer=p.scorer, prompts=_json(p.prompts),
            )).inserted_primary_key[0]
        quality_of[p.id] = quality_ids[quality_key]
        policy = _json(p.timing) or {}
        timing_key = p.key if is_import else _key({"measurement": PRE_SPLIT_TIMING, "images": p.prompt_count, **policy})
        if timing_key not in timing_ids:  # protocols that differ only in scorer share their timing
            timing_ids[timing_key] = connection.execute(new["timing_protocols"].insert().values(
                key=timing_key, images=p.prompt_count, policy=policy)).inserted_primary_key[0]
        timing_of[p.id] = timing_ids[timing_key]
        real_scorer[p.id] = not p.scorer_random
        imported[p.id] = is_import

    def is_quality(base_config_id: int, protocol_id: int) -> bool:
        return bases[base_config_id].weights == "pretrained" and real_scorer[protocol_id]

    for b in connection.execute(sa.select(old["sweep_baselines"])):
        weights = "random" if bases[b.base_config_id].weights == "random" else bases[b.base_config_id].model
        connection.execute(new["speed_baselines"].insert().values(
            speed_config_id=speed_of[b.base_config_id], environment_id=b.environment_id,
            timing_protocol_id=timing_of[b.protocol_id], time=b.time, time_spread=b.time_spread,
            batch_seconds=[b.time], source="imported" if imported[b.protocol_id] else "paired protocol (before 0.2)",
            warmup_runs=b.warmup_runs, image_digests=_json(b.image_digests), repeat_max_pixel_diff=b.repeat_max_pixel_diff,
            weights=weights, worker=b.worker, measured_at=b.measured_at,
        ))
        if is_quality(b.base_config_id, b.protocol_id):
            connection.execute(new["quality_baselines"].insert().values(
                base_config_id=b.base_config_id, quality_protocol_id=quality_of[b.protocol_id], scores=None,
                clip_score=None if imported[b.protocol_id] else b.clip_score, image_digests=_json(b.image_digests),
                repeat_max_pixel_diff=b.repeat_max_pixel_diff, environment_id=b.environment_id, worker=b.worker,
                measured_at=b.measured_at,
            ))

    setting_of: dict[int, str] = {}
    for t in connection.execute(sa.select(old["sweep_trials"])):
        setting_of[t.id] = t.setting_key
        weights = "random" if bases[t.base_config_id].weights == "random" else bases[t.base_config_id].model
        speed_failed = t.status != "done" or t.speedup is None
        connection.execute(new["speed_trials"].insert().values(
            speed_config_id=speed_of[t.base_config_id], environment_id=t.environment_id,
            timing_protocol_id=timing_of[t.protocol_id], setting_key=t.setting_key, settings=_json(t.settings),
            status="failed" if speed_failed else "done", reason=t.reason if speed_failed else None, weights=weights,
            weights_key=weights if speed_failed else "",  # 0.1.0 had no method whose speed depends on the weights
            first_speedup=t.speedup, first_ci_half_width=t.ci_half_width,
            first_source="imported" if imported[t.protocol_id] else "paired run (before 0.2)",
            first_time=t.time, first_baseline_time=t.paired_baseline_time,
            speedup=t.confirmed_speedup, ci_half_width=t.confirmed_ci_half_width, pairs=t.confirmed_repeats,
            time_spread=t.time_spread, warmup_runs=t.warmup_runs, precise_at=t.confirmed_at,
            patched_modules=t.patched_modules, worker=t.worker, started_at=t.started_at, finished_at=t.finished_at,
        ))
        if is_quality(t.base_config_id, t.protocol_id):
            done = t.status == "done" and t.score_loss is not None
            connection.execute(new["quality_trials"].insert().values(
                base_config_id=t.base_config_id, quality_protocol_id=quality_of[t.protocol_id],
                setting_key=t.setting_key, settings=_json(t.settings), status="done" if done else "failed",
                reason=None if done else t.reason, scores=None, prompts_used=t.n_images, clip_score=t.clip_score,
                score_loss=t.score_loss, image_deviation=t.image_deviation, environment_id=t.environment_id,
                worker=t.worker, started_at=t.started_at, finished_at=t.finished_at,
            ))

    for s in connection.execute(sa.select(old["sweep_searches"])):
        connection.execute(new["searches"].insert().values(
            base_config_id=s.base_config_id, environment_id=s.environment_id,
            quality_protocol_id=quality_of[s.protocol_id], timing_protocol_id=timing_of[s.protocol_id],
            strategy=s.strategy, max_loss=s.max_loss, seed=s.seed, evaluated=s.evaluated, space_size=s.space_size,
            stop=s.stop, best_setting_key=s.best_setting_key, study_name=s.study_name, log=_json(s.log),
            updated_at=s.updated_at,
        ))
    for task in connection.execute(sa.select(old["sweep_tasks"])):
        connection.execute(new["tasks"].insert().values(
            base_config_id=task.base_config_id, environment_id=task.environment_id,
            quality_protocol_id=quality_of[task.protocol_id], timing_protocol_id=timing_of[task.protocol_id],
            setting_key=task.setting_key, kind="baseline" if task.setting_key == "{}" else "setting",
            measure_quality=is_quality(task.base_config_id, task.protocol_id), max_loss=0.02, confirm_top=3,
            status=task.status, attempts=task.attempts, max_attempts=task.max_attempts, lease_owner=task.lease_owner,
            lease_expires_at=task.lease_expires_at, last_error=task.last_error, created_at=task.created_at,
            updated_at=task.updated_at,
        ))
    for target in connection.execute(sa.select(old["sweep_targets"])):
        connection.execute(new["targets"].insert().values(
            base_config_id=target.base_config_id, quality_protocol_id=quality_of[target.protocol_id],
            environment_id=target.environment_id, timing_protocol_id=timing_of[target.protocol_id],
            max_loss=target.max_loss, difficulty=target.difficulty, factor=target.factor, target=target.target,
            upper_bound=target.upper_bound, setting_key=setting_of.get(target.trial_id) if target.trial_id else None,
            origin=target.origin, created_at=target.created_at,
        ))


def downgrade() -> None:
    raise NotImplementedError("0004 splits results into speed and quality; restore a backup to go back")
