"""The shared work queue: tasks claimed under leases, so many workers measure every key exactly once.

- **Claim**: on PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED`` picks a claimable task no other worker is
  looking at; on SQLite the claim runs in a ``BEGIN IMMEDIATE`` transaction, which serialises claimers.
  Either way the claim is an UPDATE guarded by the task's state, so a task is never held twice.
- **Lease**: the claimer owns the task until ``lease_expires_at``; it renews the lease while it measures.
  A worker that dies stops renewing; once the lease expires another worker takes the task (attempt + 1).
- **Result**: the trial (or baseline) row is written in the same transaction that marks the task done,
  guarded by the lease owner: a worker that lost its lease cannot write a second result.
- **Failures**: an error releases the task for a retry until ``max_attempts``; then the task is failed and
  a failed trial with the reason is stored, so the key counts as measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, and_, case, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from search_space.setting import AccelSetting
from storage.models import BaselineRow, TaskRow, TrialRow
from storage.repository import Repository, Scope

BASELINE_KEY = AccelSetting.baseline().key
_TASK = (TaskRow.id, TaskRow.base_config_id, TaskRow.environment_id, TaskRow.protocol_id, TaskRow.setting_key)
"""The columns that identify a task and its scope."""


@dataclass(frozen=True)
class Claim:
    task_id: int
    scope: Scope
    setting_key: str
    attempt: int
    max_attempts: int

    @property
    def is_baseline(self) -> bool:
        return self.setting_key == BASELINE_KEY


class WorkQueue:
    def __init__(self, repo: Repository, lease_seconds: float = 60.0) -> None:
        self.repo = repo
        self.lease_seconds = lease_seconds
        self.dialect = repo.engine.dialect.name

    # -- enqueue ------------------------------------------------------------------------------------------

    def enqueue(self, scope: Scope, setting_keys: list[str], max_attempts: int = 3) -> int:
        """Add a task per key (the baseline's included) not queued and not stored yet; returns how many."""
        with self.repo.session() as s:
            stored = set(s.scalars(select(TrialRow.setting_key).where(
                TrialRow.base_config_id == scope.base_config_id, TrialRow.environment_id == scope.environment_id,
                TrialRow.protocol_id == scope.protocol_id)))
            if s.scalar(select(BaselineRow.id).where(
                    BaselineRow.base_config_id == scope.base_config_id, BaselineRow.environment_id == scope.environment_id,
                    BaselineRow.protocol_id == scope.protocol_id)) is not None:
                stored.add(BASELINE_KEY)
            rows = [
                {"base_config_id": scope.base_config_id, "environment_id": scope.environment_id,
                 "protocol_id": scope.protocol_id, "setting_key": key, "status": "pending", "attempts": 0,
                 "max_attempts": max_attempts}
                for key in setting_keys if key not in stored
            ]
            if not rows:
                return 0
            in_scope = select(func.count()).select_from(TaskRow).where(
                TaskRow.base_config_id == scope.base_config_id, TaskRow.environment_id == scope.environment_id,
                TaskRow.protocol_id == scope.protocol_id)
            before = s.scalar(in_scope) or 0
            insert = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(TaskRow)
            s.execute(insert.on_conflict_do_nothing(), rows)  # a key queued by another process meanwhile: kept
            return (s.scalar(in_scope) or 0) - before

    # -- claim, renew, finish ---------------------------------------------------------------------------

    def _claimable(self, environment_id: int, now: float) -> tuple[object, ...]:
        baseline_stored = exists().where(
            BaselineRow.base_config_id == TaskRow.base_config_id, BaselineRow.environment_id == TaskRow.environment_id,
            BaselineRow.protocol_id == TaskRow.protocol_id)
        return (
            TaskRow.environment_id == environment_id,
            or_(TaskRow.status == "pending", and_(TaskRow.status == "running", TaskRow.lease_expires_at < now)),
            TaskRow.attempts < TaskRow.max_attempts,
            or_(TaskRow.setting_key == BASELINE_KEY, baseline_stored),  # trials need their baseline first
        )

    def _begin(self, connection: Connection) -> None:
        if self.dialect == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    def claim(self, environment_id: int, owner: str, prefer_base_config: int | None = None) -> Claim | None:
        """Take the next claimable task (preferring the base configuration already loaded) under a lease."""
        now = time.time()
        with self.repo.engine.connect() as connection:
            self._begin(connection)
            self._expire_exhausted(connection, environment_id, now)
            query = select(*_TASK, TaskRow.attempts, TaskRow.max_attempts).where(
                *self._claimable(environment_id, now))
            order = [case((TaskRow.base_config_id == prefer_base_config, 0), else_=1)] if prefer_base_config else []
            query = query.order_by(*order, TaskRow.setting_key != BASELINE_KEY, TaskRow.id).limit(1)
            if self.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            row = connection.execute(query).first()
            if row is None:
                connection.commit()
                return None
            claimed = connection.execute(
                update(TaskRow).where(TaskRow.id == row.id, *self._claimable(environment_id, now)).values(
                    status="running", lease_owner=owner, lease_expires_at=now + self.lease_seconds,
                    attempts=TaskRow.attempts + 1)
            ).rowcount
            connection.commit()
        if claimed != 1:
            return None
        return Claim(row.id, Scope(row.base_config_id, row.environment_id, row.protocol_id), row.setting_key,
                     row.attempts + 1, row.max_attempts)

    def _expire_exhausted(self, connection: Connection, environment_id: int, now: float) -> None:
        """Tasks whose last allowed lease expired: failed, with a failed trial stored as their result."""
        dead = connection.execute(select(*_TASK, TaskRow.attempts, TaskRow.last_error).where(
            TaskRow.environment_id == environment_id, TaskRow.status == "running", TaskRow.lease_expires_at < now,
            TaskRow.attempts >= TaskRow.max_attempts)).all()
        for task in dead:
            reason = f"gave up after {task.attempts} attempts: lease expired (worker killed or hung)" + (
                f"; last error: {task.last_error}" if task.last_error else "")
            connection.execute(update(TaskRow).where(TaskRow.id == task.id).values(
                status="failed", lease_owner=None, lease_expires_at=None, last_error=reason))
            self._fail_task_results(connection, task, reason)

    def _fail_task_results(self, connection: Connection, task: object, reason: str) -> None:
        """A failed trial task stores a failed trial; a failed baseline fails its scope's trials with it."""
        if task.setting_key != BASELINE_KEY:  # type: ignore[attr-defined]
            self._insert_failed_trial(connection, task, reason)
            return
        dependents = connection.execute(select(*_TASK).where(
            TaskRow.base_config_id == task.base_config_id, TaskRow.environment_id == task.environment_id,  # type: ignore[attr-defined]
            TaskRow.protocol_id == task.protocol_id, TaskRow.status == "pending")).all()  # type: ignore[attr-defined]
        for dependent in dependents:
            connection.execute(update(TaskRow).where(TaskRow.id == dependent.id).values(
                status="failed", last_error=f"baseline failed: {reason}"))
            self._insert_failed_trial(connection, dependent, f"baseline could not be measured: {reason}")

    @staticmethod
    def _insert_failed_trial(connection: Connection, task: object, reason: str) -> None:
        from datetime import datetime, timezone

        insert = (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(TrialRow)
        now = datetime.now(timezone.utc)
        connection.execute(insert.on_conflict_do_nothing(), [{
            "base_config_id": task.base_config_id, "environment_id": task.environment_id,  # type: ignore[attr-defined]
            "protocol_id": task.protocol_id, "setting_key": task.setting_key,  # type: ignore[attr-defined]
            "settings": AccelSetting.from_key(task.setting_key).as_dict(),  # type: ignore[attr-defined]
            "status": "failed", "reason": reason, "worker": "queue", "started_at": now, "finished_at": now,
        }])

    def renew(self, claim: Claim, owner: str) -> bool:
        """Extend the lease; False if it was lost (expired and taken by another worker)."""
        with self.repo.session() as s:
            return s.execute(update(TaskRow).where(
                TaskRow.id == claim.task_id, TaskRow.lease_owner == owner, TaskRow.status == "running").values(
                lease_expires_at=time.time() + self.lease_seconds)).rowcount == 1

    def complete(self, claim: Claim, owner: str, write: Callable[[Session], None]) -> bool:
        """Write the result and mark the task done in one transaction, if this worker still holds the lease."""
        try:
            with self.repo.session() as s:
                if s.execute(update(TaskRow).where(
                        TaskRow.id == claim.task_id, TaskRow.lease_owner == owner, TaskRow.status == "running").values(
                        status="done", lease_owner=None, lease_expires_at=None)).rowcount != 1:
                    raise _LeaseLost
                write(s)
            return True
        except _LeaseLost:
            return False
        except IntegrityError:  # the key was stored outside the queue meanwhile: that result stands
            with self.repo.session() as s:
                s.execute(update(TaskRow).where(TaskRow.id == claim.task_id, TaskRow.lease_owner == owner).values(
                    status="done", lease_owner=None, lease_expires_at=None))
            return True

    def release(self, claim: Claim, owner: str, error: str) -> str:
        """After an error: back to pending for a retry, or failed (with a failed trial) at the last attempt."""
        with self.repo.engine.connect() as connection:
            self._begin(connection)
            task = connection.execute(select(*_TASK, TaskRow.attempts, TaskRow.max_attempts).where(
                TaskRow.id == claim.task_id, TaskRow.lease_owner == owner, TaskRow.status == "running")).first()
            if task is None:
                connection.commit()
                return "lost"
            if task.attempts >= task.max_attempts:
                reason = f"gave up after {task.attempts} attempts: {error}"
                connection.execute(update(TaskRow).where(TaskRow.id == task.id).values(
                    status="failed", lease_owner=None, lease_expires_at=None, last_error=reason))
                self._fail_task_results(connection, task, reason)
                outcome = "failed"
            else:
                connection.execute(update(TaskRow).where(TaskRow.id == task.id).values(
                    status="pending", lease_owner=None, lease_expires_at=None, last_error=error))
                outcome = "retry"
            connection.commit()
            return outcome

    # -- observation ------------------------------------------------------------------------------------

    def counts(self, environment_id: int | None = None) -> dict[str, int]:
        with self.repo.session() as s:
            query = select(TaskRow.status, func.count()).group_by(TaskRow.status)
            if environment_id is not None:
                query = query.where(TaskRow.environment_id == environment_id)
            return {status: n for status, n in s.execute(query).all()}

    def outstanding(self, environment_id: int) -> int:
        """Tasks not finished: pending, or running under a lease (live or expired)."""
        counts = self.counts(environment_id)
        return counts.get("pending", 0) + counts.get("running", 0)


class _LeaseLost(Exception):
    pass
