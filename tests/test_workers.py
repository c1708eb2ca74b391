"""Many workers, one database: the queue's leases on real SQLite and PostgreSQL, worker processes killed with
SIGKILL, and schema migrations."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from search_space.setting import AccelSetting
from storage import Repository, Scope
from storage.engine import open_engine
from storage.models import QualityTrialRow, SpeedBaselineRow, SpeedTrialRow, TaskRow
from storage.queue import BASELINE_KEY, WorkQueue
from storage.schema import head, upgrade
from sweep.fronts.cli import app
from sweep.study.catalogue import load_preset
from sweep.study.runner import Runner
from sweep.study.worker import cpu_threads
from tests.conftest import TINY_A_SPACE, write_space


def _scope(repo: Repository) -> Scope:
    from search_space.base_config import BaseConfig

    base = BaseConfig("tiny-sd-a", "builtin:tiny-sd-a", "random", "DDIMScheduler", 6, 64, 64, "float32", 1)
    return repo.scope(
        base, repo.ensure_environment("env", "cpu", {}),
        repo.ensure_quality_protocol("q", prompt_source="bundled", prompts=["a"], prompts_sha256="0" * 64, seed=0,
                                     scorer="open_clip:x:random"),
        repo.ensure_timing_protocol("t", images=1, policy={}),
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def _baseline_row(repo: Repository, scope: Scope, worker: str):  # type: ignore[no-untyped-def]
    return repo.measurements.speed_baseline_row(scope, time=1.0, time_spread=0.0, batch_seconds=[1.0], source="timing set",
                                                image_digests=["d"], weights="random", worker=worker)


def test_lease_expiry_hands_the_task_to_another_worker(db_url: str) -> None:
    repo = Repository(db_url)
    scope = _scope(repo)
    queue = WorkQueue(repo, lease_seconds=0.5)
    setting = AccelSetting.of({"deepcache": {"cache_interval": 2, "cache_branch_id": 0}})
    options = dict(measure_quality=False, max_loss=0.02, confirm_top=3)
    assert queue.enqueue(scope, "baseline", [BASELINE_KEY], **options) == 1  # type: ignore[arg-type]
    assert queue.enqueue(scope, "setting", [setting.key], **options) == 1  # type: ignore[arg-type]
    assert queue.enqueue(scope, "setting", [setting.key], **options) == 0  # type: ignore[arg-type]  # queued once

    first = queue.claim(scope.environment_id, "A")
    assert first is not None and first.kind == "baseline"  # settings wait for their baseline
    assert queue.claim(scope.environment_id, "B") is None  # the setting is not claimable yet, the baseline is held
    time.sleep(0.7)  # A stops renewing (killed): its lease expires
    second = queue.claim(scope.environment_id, "B")
    assert second is not None and second.task_id == first.task_id and second.attempt == 2
    assert not queue.complete(first, "A", lambda s: repo.insert_ignore(s, [_baseline_row(repo, scope, "A")]))  # refused
    assert queue.complete(second, "B", lambda s: repo.insert_ignore(s, [_baseline_row(repo, scope, "B")]))
    with repo.session() as s:
        assert [b.worker for b in s.scalars(select(SpeedBaselineRow))] == ["B"]

    trial = queue.claim(scope.environment_id, "A")
    assert trial is not None and trial.setting_key == setting.key and trial.kind == "setting"
    assert queue.release(trial, "A", "RuntimeError: CUDA out of memory") == "retry"
    for attempt in (2, 3):
        again = queue.claim(scope.environment_id, "A")
        assert again is not None and again.attempt == attempt
        outcome = queue.release(again, "A", "RuntimeError: CUDA out of memory")
    assert outcome == "failed" and queue.claim(scope.environment_id, "A") is None
    with repo.session() as s:
        (failed,) = s.scalars(select(SpeedTrialRow)).all()
        assert failed.status == "failed" and "gave up after 3 attempts" in failed.reason and "out of memory" in failed.reason
        assert s.scalars(select(QualityTrialRow)).all() == []  # no quality is measured in this scope
    assert queue.counts(scope.environment_id) == {"done": 1, "failed": 1}


def test_a_finished_precise_task_owed_again_is_reopened(db_url: str) -> None:
    """A setting settled below a leader that is out at another threshold is owed a timing to the protocol's width:
    its finished precise task is taken again (once: a pending or running task is left as it is)."""
    repo = Repository(db_url)
    scope = _scope(repo)
    queue = WorkQueue(repo)
    key = AccelSetting.of({"deepcache": {"cache_interval": 2, "cache_branch_id": 0}}).key
    options = dict(measure_quality=False, max_loss=0.02, confirm_top=3)
    assert queue.enqueue(scope, "baseline", [BASELINE_KEY], **options) == 1  # type: ignore[arg-type]
    baseline = queue.claim(scope.environment_id, "A")
    assert baseline is not None and queue.complete(baseline, "A", lambda s: repo.insert_ignore(s, [_baseline_row(repo, scope, "A")]))
    assert queue.enqueue(scope, "precise", [key], **options) == 1  # type: ignore[arg-type]
    assert queue.reopen(scope, "precise", [key]) == 0  # pending: nothing to reopen
    task = queue.claim(scope.environment_id, "A")
    assert task is not None and task.kind == "precise" and queue.complete(task, "A", lambda s: None)
    assert queue.claim(scope.environment_id, "A") is None
    assert queue.reopen(scope, "precise", [key]) == 1
    again = queue.claim(scope.environment_id, "B")
    assert again is not None and again.task_id == task.task_id and again.attempt == 1


def test_a_precise_timing_says_how_many_speed_records_it_updated(db_url: str) -> None:
    """A precise timing of a key with no stored speed updates nothing, and says so: the runner then counts it failed
    instead of owing it again round after round."""
    repo = Repository(db_url)
    scope = _scope(repo)
    key = AccelSetting.of({"deepcache": {"cache_interval": 2, "cache_branch_id": 0}}).key
    timing = dict(speedup=2.0, ci_half_width=0.01, pairs=6, time=0.5, baseline_time=1.0, time_spread=0.0, warmup_runs=2)
    with repo.session() as s:
        repo.insert_ignore(s, [repo.measurements.speed_trial_row(
            scope, settings=AccelSetting.from_key(key).as_dict(), setting_key=key, status="done", weights="random",
            weights_key="", packages_key="", first_speedup=2.0, first_ci_half_width=0.1, first_source="paired timing set",
            first_time=0.5, first_baseline_time=1.0, worker="w", started_at=datetime.now(timezone.utc))])
    assert repo.measurements.save_precise(
        repo.measurements.precise_statement(scope, key, **timing),  # type: ignore[arg-type]
        repo.measurements.precise_statement(scope, "no such key", **timing)) == [1, 0]  # type: ignore[arg-type]


def _worker_pids(url: str) -> dict[int, int]:
    """pid → running tasks, from the lease owners (host:pid)."""
    repo = Repository(url)
    with repo.session() as s:
        owners = s.scalars(select(TaskRow.lease_owner).where(TaskRow.status == "running")).all()
    repo.close()
    pids: dict[int, int] = {}
    for owner in owners:
        if owner:
            pid = int(owner.rsplit(":", 1)[1])
            pids[pid] = pids.get(pid, 0) + 1
    return pids


def test_four_workers_on_postgres_one_killed_mid_trial(postgres_url: str) -> None:
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "sweep", "upbound", "--preset", "tiny", "--db", postgres_url, "--workers", "4",
         "--device", "cpu", "--lease", "6", "--confirm-top", "0", "--quiet", "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    killed = None
    deadline = time.monotonic() + 600
    while killed is None and time.monotonic() < deadline and coordinator.poll() is None:
        time.sleep(0.5)
        repo = Repository(postgres_url)
        with repo.session() as s:
            trials = s.scalar(text("SELECT count(*) FROM sweep_speed_trials"))
            running = s.scalars(select(TaskRow).where(TaskRow.status == "running", TaskRow.kind == "setting")).all()
            victim = running[0] if trials >= 4 and running else None
            task_id = victim.id if victim else None
            owner = victim.lease_owner if victim else None
        repo.close()
        if owner:
            os.kill(int(owner.rsplit(":", 1)[1]), signal.SIGKILL)
            killed = task_id
    assert killed is not None, "no trial was running to kill"
    out, err = coordinator.communicate(timeout=900)
    assert coordinator.returncode == 0, err.decode()
    rows = json.loads(out)

    space = load_preset("tiny")
    expected = sum(len(e.settings) for e in space.entries)  # baselines + settings
    repo = Repository(postgres_url)
    with repo.session() as s:
        keys = s.execute(select(SpeedTrialRow.speed_config_id, SpeedTrialRow.setting_key)).all()
        baselines = s.scalar(text("SELECT count(*) FROM sweep_speed_baselines"))
        task = s.get(TaskRow, killed)
        statuses = set(s.scalars(select(TaskRow.status)))
    assert len(keys) == len(set(keys)) == expected - len(space.entries)  # every key once, none lost
    assert baselines == len(space.entries)
    assert task.status == "done" and task.attempts == 2  # the killed worker's trial was taken over
    assert statuses == {"done"}

    # a single-worker run over the same stored trials measures nothing and publishes the same bounds; it runs
    # in the workers' environment (their share of the cores is part of the environment's key)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(cpu_threads(["cpu"] * 4))  # type: ignore[arg-type]
    try:
        summary = Runner(repo, "cpu").run(space, confirm_top=0)
    finally:
        torch.set_num_threads(threads)
    assert summary.new == 0
    single = [b.as_row() for b in repo.bounds.rows(0.02, environment_ids=[summary.environment_id])]
    assert [(r["pipeline"], r["scheduler"], r["steps"], r["speedup"], r["settings"]) for r in rows] == \
           [(r["pipeline"], r["scheduler"], r["steps"], r["speedup"], r["settings"]) for r in single]


def test_two_workers_share_one_sqlite_file(tmp_path: Path, sqlite_url: str) -> None:
    result = CliRunner().invoke(app, [
        "upbound", str(write_space(tmp_path, TINY_A_SPACE)), "--db", sqlite_url, "--workers", "2", "--device", "cpu",
        "--quiet", "--format", "json",
    ])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    repo = Repository(sqlite_url)
    with repo.session() as s:
        keys = s.scalars(select(SpeedTrialRow.setting_key)).all()
        workers = set(s.scalars(select(SpeedTrialRow.worker)))
        precise = s.scalars(select(TaskRow).where(TaskRow.kind == "precise")).all()
    assert len(keys) == len(set(keys)) == 8
    # the worker that finished the last setting queued the contenders' precise timings, and a worker ran them
    assert precise and {t.status for t in precise} == {"done"}
    assert row["confirmed"] is True and row["timing"] == "precise" and row["kind"] == "speed map"
    # measured by the worker processes, never by the coordinator (the 4-worker test covers contention)
    import socket

    assert workers and {w.rsplit(":", 1)[0] for w in workers} == {socket.gethostname()}
    assert os.getpid() not in {int(w.rsplit(":", 1)[1]) for w in workers} and len(workers) <= 2
    assert cpu_threads(["cpu", "cpu"]) == max(1, (os.cpu_count() or 1) // 2)

    # run again: everything is stored and nothing is leased, so no worker process is started just to stop
    from sweep import app as app_layer

    again = app_layer.run_with_workers(sqlite_url, app_layer.load_space(write_space(tmp_path, TINY_A_SPACE), None),
                                       ["cpu", "cpu"])
    assert again.queued == 0 and again.worker_exit_codes == []


def test_schema_is_created_checked_and_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = open_engine(url)
    upgrade(engine, "0001")  # a database written before the work queue existed
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO sweep_environments (key, device, details) VALUES ('k', 'cpu', '{}')"))
    from sweep.errors import StorageError

    with pytest.raises(StorageError, match="sweep db upgrade"):
        Repository(url)
    result = CliRunner().invoke(app, ["db", "upgrade", "--db", url])
    assert result.exit_code == 0, result.output
    current = CliRunner().invoke(app, ["db", "current", "--db", url])
    assert json.loads(current.stdout) == {"database": head(), "sweep": head()}
    repo = Repository(url)
    with repo.session() as s:
        assert s.scalar(text("SELECT device FROM sweep_environments WHERE key = 'k'")) == "cpu"  # data kept
        assert s.scalar(text("SELECT count(*) FROM sweep_tasks")) == 0
    with engine.begin() as connection:
        connection.execute(text("UPDATE sweep_alembic_version SET version_num = '9999'"))
    with pytest.raises(StorageError, match="upgrade sweep"):
        Repository(url)


def test_workers_started_apart_need_nothing_but_the_database_url(tmp_path: Path, postgres_url: str) -> None:
    """Two `sweep worker` processes started separately, each in an empty folder of its own (as on two machines),
    finish one queued space together through PostgreSQL alone."""
    from sweep.study.catalogue import load_space
    from sweep.study.worker import enqueue_space

    space = load_space(write_space(tmp_path, TINY_A_SPACE))
    repo = Repository(postgres_url)
    _, added, _ = enqueue_space(repo, space, "cpu", max_loss=0.02, confirm_top=1)
    assert added == 1 + 8  # the baseline and the eight settings; the precise timing is queued by a worker
    folders = [tmp_path / f"machine-{i}" for i in (1, 2)]
    workers = []
    for folder in folders:
        folder.mkdir()
        workers.append(subprocess.Popen([sys.executable, "-m", "sweep", "worker", "--db", postgres_url, "--device",
                                         "cpu", "--quiet", "--lease", "10"], cwd=folder, stderr=subprocess.PIPE))
        time.sleep(1.0)  # started one after the other, as separate machines would be
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read().decode()  # type: ignore[union-attr]
    assert [list(f.iterdir()) for f in folders] == [[], []]  # no file written or shared: the URL is all they have
    with repo.session() as s:
        keys = s.scalars(select(SpeedTrialRow.setting_key)).all()
        measured_by = set(s.scalars(select(SpeedTrialRow.worker)))
        statuses = set(s.scalars(select(TaskRow.status)))
        precise = s.scalar(select(text("count(*)")).select_from(TaskRow).where(TaskRow.kind == "precise"))
    assert len(keys) == len(set(keys)) == 8 and statuses == {"done"} and precise >= 1
    assert {int(w.rsplit(":", 1)[1]) for w in measured_by} == {w.pid for w in workers}  # both took part
    (row,) = [b.as_row() for b in repo.bounds.rows(0.02)]
    assert row["kind"] == "speed map" and row["timing"] == "precise"
