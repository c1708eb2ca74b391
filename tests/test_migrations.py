"""A database written by the previous release (0.1.0, schema 0003) upgrades in place with nothing lost.

tests/data/release-0.1.0.sqlite was written by sweep 0.1.0 itself: a random-weight tiny sweep, the same sweep
with local "pretrained" weights and a checkpoint scorer, a legacy import, and targets. Its rows are copied into
a fresh database at revision 0003 (SQLite and PostgreSQL), which is then upgraded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, func, select, text

from search_space.keys import canonical_json
from search_space.spec import ProtocolSpec
from storage import Repository
from storage.engine import open_engine
from storage.models import EnvironmentRow, QualityProtocolRow, QualityTrialRow, SpeedTrialRow, TargetRow
from storage.schema import current, head, upgrade
from sweep.measurement.protocol import QualityProtocol

RELEASE = Path(__file__).parent / "data" / "release-0.1.0.sqlite"
TABLES = ("sweep_base_configs", "sweep_environments", "sweep_protocols", "sweep_baselines", "sweep_trials",
          "sweep_searches", "sweep_tasks", "sweep_targets")


def _copy_release(url: str) -> dict[str, list[dict[str, object]]]:
    engine = open_engine(url)
    upgrade(engine, "0003")
    source = create_engine(f"sqlite:///{RELEASE}")
    old, new = MetaData(), MetaData()
    old.reflect(source)
    new.reflect(engine)
    rows: dict[str, list[dict[str, object]]] = {}
    with source.connect() as read, engine.begin() as write:
        for name in TABLES:
            rows[name] = [dict(r._mapping) for r in read.execute(select(old.tables[name]))]
            if rows[name]:
                write.execute(new.tables[name].insert(), rows[name])
            if engine.dialect.name == "postgresql":
                write.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                   f"(SELECT coalesce(max(id), 1) FROM {name}))"))
    return rows


def test_release_database_upgrades_with_nothing_lost(db_url: str) -> None:
    old = _copy_release(db_url)
    assert len(old["sweep_trials"]) == 13 and len(old["sweep_targets"]) == 7
    with pytest.raises(Exception, match="sweep db upgrade"):
        Repository(db_url)  # an older schema is refused with what to do, never silently changed
    engine = open_engine(db_url)
    upgrade(engine)
    assert current(engine) == head()
    repo = Repository(db_url)

    with repo.session() as s:
        # the old rows stay, untouched, in the archive tables
        for name in ("sweep_baselines", "sweep_trials", "sweep_protocols", "sweep_targets"):
            archived = name.replace("sweep_", "sweep_archive_", 1)
            assert s.scalar(text(f"SELECT count(*) FROM {archived}")) == len(old[name])
        speeds = {(t.speed_config_id, t.environment_id, t.setting_key): t for t in s.scalars(select(SpeedTrialRow))}
        qualities = s.scalars(select(QualityTrialRow)).all()
        targets = s.scalars(select(TargetRow).order_by(TargetRow.id)).all()
        quality_keys = set(s.scalars(select(QualityProtocolRow.key)))
        assert s.scalar(select(func.count()).select_from(TargetRow)) == 7

    # every old trial's speed is a speed record: first measurement and confirmed value carried over
    assert len(speeds) == len(old["sweep_trials"])
    by_old = {(t["base_config_id"], t["setting_key"]): t for t in old["sweep_trials"]}
    for (base_id, key), t in by_old.items():
        matches = [r for (sc, env, k), r in speeds.items() if k == key and r.environment_id == t["environment_id"]
                   and r.first_speedup == t["speedup"]]
        assert matches, (base_id, key)
        assert matches[0].speedup == t["confirmed_speedup"] and matches[0].status == ("done" if t["speedup"] else "failed")
    # 0007: every precise timing says why it stopped, read from its own numbers by the unchanged stopping rule
    timed = [r for r in speeds.values() if r.speedup is not None]
    assert timed and all(r.precise_stop in ("target width", "below leader", "max pairs") for r in timed)
    assert all((r.precise_stop == "target width") == (r.ci_half_width is not None and r.ci_half_width <= 0.03 + 1e-12)
               for r in timed)
    assert all(r.precise_stop is None for r in speeds.values() if r.speedup is None)
    # quality only where it was quality: pretrained weights with a real scorer (5) and the imported file (3)
    protocols = {p["id"]: p for p in old["sweep_protocols"]}
    bases = {b["id"]: b for b in old["sweep_base_configs"]}
    real = [t for t in old["sweep_trials"] if bases[t["base_config_id"]]["weights"] == "pretrained"
            and not protocols[t["protocol_id"]]["scorer_random"]]
    assert len(qualities) == len(real) == 8
    assert sorted((q.score_loss for q in qualities), key=str) == sorted((t["score_loss"] for t in real), key=str)
    # targets keep their bound and the setting that reaches them
    old_trials = {t["id"]: t for t in old["sweep_trials"]}
    for new_target, old_target in zip(targets, old["sweep_targets"], strict=True):
        assert (new_target.target, new_target.upper_bound, new_target.difficulty) == (
            old_target["target"], old_target["upper_bound"], old_target["difficulty"])
        expected = old_trials[old_target["trial_id"]]["setting_key"] if old_target["trial_id"] else None
        assert new_target.setting_key == expected

    # 0005: the environment's key holds the device, Python and the core libraries only (as this sweep computes
    # it), the old key stays in its details; each speed record carries its own methods' package versions
    from sweep.measurement.environment import Environment

    old_env = old["sweep_environments"][0]
    with repo.session() as s:
        env = s.get(EnvironmentRow, old_env["id"])
        assert env is not None
        expected = Environment(old_env["device"], {"torch": "2.13.0+cpu", "diffusers": "0.42.1", "transformers": "5.24.0",
                                                   "python": "3.11.7"}).key
        assert (env.key, env.details["key_before_0005"]) == (expected, old_env["key"])
        assert s.get(EnvironmentRow, 2).key == old["sweep_environments"][1]["key"]  # imported: unchanged
        packages = {(t.environment_id, t.setting_key): t.packages_key for t in s.scalars(select(SpeedTrialRow))}
    for (env_id, key), packages_key in packages.items():
        methods = set(json.loads(key))
        want = {"DeepCache": "0.1.1"} if "deepcache" in methods else {}
        want |= {"tomesd": "0.1.3"} if "tome" in methods else {}
        assert packages_key == (canonical_json(want) if want and env_id == 1 else ""), (env_id, key)

    # the migrated quality protocol has the key this sweep computes, so its score losses are reused as they are
    spec = ProtocolSpec(prompts="bundled", num_prompts=2, seed=3, scorer="sweep-tiny-clip",
                        scorer_pretrained="/tmp/olddb/tiny-clip.pt")
    from sweep.measurement.prompts import load_prompts

    key = QualityProtocol(spec.prompts, tuple(load_prompts("bundled", 2)), 3, spec.scorer, spec.scorer_pretrained).key
    assert key in quality_keys

    # and the join answers on the upgraded database: the imported file's bounds, the local weights' bound
    rows = [b.as_row() for b in repo.bounds.rows(0.02)]
    imported = [r for r in rows if r["device"] == "imported from legacy.json" and r["quality_known"]
                and r["quality_source"]["device"] == "imported from legacy.json"]
    assert sorted(r["speedup"] for r in imported) == [2.7, 12.0]
    local = [r for r in rows if r["quality_source"] and r["quality_source"]["model"] == "/tmp/olddb/tiny-sd-b-folder"]
    assert local and all(r["quality_known"] for r in local)
    assert [r for r in rows if r["pipeline"] == "tiny-sd-b"][0]["kind"] == "speed map"  # random weights: speed only


def test_the_migrations_build_the_schema_the_models_declare(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.models import Base

    engine = open_engine(db_url)
    upgrade(engine)
    declared = set(Base.metadata.tables)

    def include(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
        return type_ != "table" or name in declared

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": include, "compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
