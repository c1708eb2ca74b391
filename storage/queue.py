"""The shared work queue: tasks claimed under leases, so many workers measure every key exactly once.

- **Tasks**: per scope (base config, environment, quality and timing protocol) a ``baseline`` task, one
  ``setting`` task per setting (its quality pass and first speed estimate), and, once the scope's settings are
  finished, ``precise`` tasks for the contenders (queued by the worker that finished the last of them).
- **Claim**: on PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED`` picks a claimable task no other worker is
  looking at; on SQLite the claim runs in a ``BEGIN IMMEDIATE`` transaction, which serialises claimers.
  Either way the claim is an UPDATE guarded by the task's state, so a task is never held twice.
- **Lease**: the claimer owns the task until ``lease_expires_at`` and renews it between generations. A worker
  that dies stops renewing; once the lease expires another worker takes the task (attempt + 1).
- **Result**: the result rows are written in the same transaction that marks the task done, guarded by the
  lease owner: a worker that lost its lease cannot write a second result.
- **Failures**: an error releases the task for a retry until ``max_attempts``; then the task is failed and a
  failed record with the reason is stored, so the key counts as measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Connection, and_, case, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from search_space import defaults
from search_space.setting import AccelSetting
from storage.database import Database, Scope
from storage.models import BaseConfigRow, QualityTrialRow, SpeedTrialRow, TaskRow

BASELINE_KEY = AccelSetting.baseline().key
KINDS = ("baseline", "setting", "precise")
_TASK = (TaskRow.id, TaskRow.base_config_id, TaskRow.environment_id, TaskRow.quality_protocol_id,
         TaskRow.timing_protocol_id, TaskRow.setting_key, TaskRow.kind, TaskRow.measure_quality, TaskRow.max_loss,
         TaskRow.confirm_top)
"""The columns that identify a task, its scope and its options."""


@dataclass(frozen=True)
class Claim:
    task_id: int
    scope: Scope
    setting_key: str
    kind: str
    measure_quality: bool
    max_loss: float
    confirm_top: int
    attempt: int
    max_attempts: int


class WorkQueue:
    def __init__(self, db: Database, lease_seconds: float = defaults.LEASE_SECONDS) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        self.dialect = db.dialect

    def _insert(self, model: type) -> object:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(model)

    # -- enqueue ------------------------------------------------------------------------------------------

    def enqueue(
        self, scope: Scope, kind: str, setting_keys: list[str], *, measure_quality: bool, max_loss: float,
        confirm_top: int, max_attempts: int = 3,
    ) -> int:
        """Add a task per key not queued yet (a key queued by another process meanwhile is kept); returns how many."""
        assert kind in KINDS
        if not setting_keys:
            return 0
        rows = [
            {"base_config_id": scope.base_config_id, "environment_id": scope.environment_id,
             "quality_protocol_id": scope.quality_protocol_id, "timing_protocol_id": scope.timing_protocol_id,
             "setting_key": key, "kind": kind, "measure_quality": measure_quality, "max_loss": max_loss,
             "confirm_top": confirm_top, "status": "pending", "attempts": 0, "max_attempts": max_attempts}
            for key in setting_keys
        ]
        with self.db.session() as s:
            in_scope = select(func.count()).select_from(TaskRow).where(*scope.task_filter(TaskRow), TaskRow.kind == kind)
            before = s.scalar(in_scope) or 0
            s.execute(self._insert(TaskRow).on_conflict_do_nothing(), rows)  # type: ignore[attr-defined]
            return (s.scalar(in_scope) or 0) - before

    # -- claim, renew, finish ---------------------------------------------------------------------------

    def _claimable(self, environment_id: int, now: float) -> tuple[object, ...]:
        baseline = aliased(TaskRow)
        baseline_pending = exists().where(
            baseline.base_config_id == TaskRow.base_config_id, baseline.environment_id == TaskRow.environment_id,
            baseline.quality_protocol_id == TaskRow.quality_protocol_id,
            baseline.timing_protocol_id == TaskRow.timing_protocol_id, baseline.kind == "baseline",
            baseline.status.in_(("pending", "running")))
        return (
            TaskRow.environment_id == environment_id,
            or_(TaskRow.status == "pending", and_(TaskRow.status == "running", TaskRow.lease_expires_at < now)),
            TaskRow.attempts < TaskRow.max_attempts,
            or_(TaskRow.kind == "baseline", ~baseline_pending),  # settings wait for their scope's baselines
        )

    def _begin(self, connection: Connection) -> None:
        if self.dialect == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    def claim(self, environment_id: int, owner: str, prefer_base_config: int | None = None) -> Claim | None:
        """Take the next claimable task (preferring the base configuration already loaded) under a lease."""
        now = time.time()
        with self.db.engine.connect() as connection:
            self._begin(connection)
            self._expire_exhausted(connection, environment_id, now)
            query = select(*_TASK, TaskRow.attempts, TaskRow.max_attempts).where(*self._claimable(environment_id, now))
            order = [case((TaskRow.base_config_id == prefer_base_config, 0), else_=1)] if prefer_base_config else []
            kind_order = case((TaskRow.kind == "baseline", 0), (TaskRow.kind == "setting", 1), else_=2)
            query = query.order_by(*order, kind_order, TaskRow.id).limit(1)
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
        scope = self.db.scope_of(row.base_config_id, row.environment_id, row.quality_protocol_id, row.timing_protocol_id)
        return Claim(row.id, scope, row.setting_key, row.kind, row.measure_quality, row.max_loss, row.confirm_top,
                     row.attempts + 1, row.max_attempts)

    def _expire_exhausted(self, connection: Connection, environment_id: int, now: float) -> None:
        """Tasks whose last allowed lease expired: failed, with a failed record stored as their result."""
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
        """A failed setting stores failed records; a failed baseline fails its scope's settings with it; a failed
        precise timing leaves the setting's first estimate as it is."""
        kind = task.kind  # type: ignore[attr-defined]
        if kind == "setting":
            self._insert_failed(connection, task, reason)
        elif kind == "baseline":
            dependents = connection.execute(select(*_TASK).where(
                TaskRow.base_config_id == task.base_config_id, TaskRow.environment_id == task.environment_id,  # type: ignore[attr-defined]
                TaskRow.quality_protocol_id == task.quality_protocol_id,  # type: ignore[attr-defined]
                TaskRow.timing_protocol_id == task.timing_protocol_id,  # type: ignore[attr-defined]
                TaskRow.kind == "setting", TaskRow.status == "pending")).all()
            for dependent in dependents:
                connection.execute(update(TaskRow).where(TaskRow.id == dependent.id).values(
                    status="failed", last_error=f"baseline failed: {reason}"))
                self._insert_failed(connection, dependent, f"baseline could not be measured: {reason}")

    def _insert_failed(self, connection: Connection, task: object, reason: str) -> None:
        now = datetime.now(timezone.utc)
        base = connection.execute(select(BaseConfigRow.speed_config_id, BaseConfigRow.weights, BaseConfigRow.model).where(
            BaseConfigRow.id == task.base_config_id)).one()  # type: ignore[attr-defined]
        speed_config_id = base.speed_config_id
        weights = "random" if base.weights == "random" else base.model  # a failure is kept with its weights
        settings = AccelSetting.from_key(task.setting_key).as_dict()  # type: ignore[attr-defined]
        common = {"setting_key": task.setting_key, "settings": settings, "status": "failed", "reason": reason,  # type: ignore[attr-defined]
                  "worker": "queue", "started_at": now, "finished_at": now}
        connection.execute(self._insert(SpeedTrialRow).on_conflict_do_nothing(), [{  # type: ignore[attr-defined]
            **common, "speed_config_id": speed_config_id, "environment_id": task.environment_id,  # type: ignore[attr-defined]
            "timing_protocol_id": task.timing_protocol_id, "weights": weights, "weights_key": weights}])  # type: ignore[attr-defined]
        if task.measure_quality:  # type: ignore[attr-defined]
            connection.execute(self._insert(QualityTrialRow).on_conflict_do_nothing(), [{  # type: ignore[attr-defined]
                **common, "base_config_id": task.base_config_id, "quality_protocol_id": task.quality_protocol_id,  # type: ignore[attr-defined]
                "environment_id": task.environment_id}])  # type: ignore[attr-defined]

    def renew(self, claim: Claim, owner: str) -> bool:
        """Extend the lease; False if it was lost (expired and taken by another worker)."""
        with self.db.session() as s:
            return s.execute(update(TaskRow).where(
                TaskRow.id == claim.task_id, TaskRow.lease_owner == owner, TaskRow.status == "running").values(
                lease_expires_at=time.time() + self.lease_seconds)).rowcount == 1  # type: ignore[attr-defined]

    def complete(self, claim: Claim, owner: str, write: Callable[[Session], None]) -> bool:
        """Write the result and mark the task done in one transaction, if this worker still holds the lease."""
        try:
            with self.db.session() as s:
                if s.execute(update(TaskRow).where(
                        TaskRow.id == claim.task_id, TaskRow.lease_owner == owner, TaskRow.status == "running").values(
                        status="done", lease_owner=None, lease_expires_at=None)).rowcount != 1:  # type: ignore[attr-defined]
                    raise _LeaseLost
                write(s)
            return True
        except _LeaseLost:
            return False
        except IntegrityError:  # the key was stored outside the queue meanwhile: that result stands
            with self.db.session() as s:
                s.execute(update(TaskRow).where(TaskRow.id == claim.task_id, TaskRow.lease_owner == owner).values(
                    status="done", lease_owner=None, lease_expires_at=None))
            return True

    def release(self, claim: Claim, owner: str, error: str) -> str:
        """After an error: back to pending for a retry, or failed (with a failed record) at the last attempt."""
        with self.db.engine.connect() as connection:
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
        with self.db.session() as s:
            query = select(TaskRow.status, func.count()).group_by(TaskRow.status)
            if environment_id is not None:
                query = query.where(TaskRow.environment_id == environment_id)
            return {status: n for status, n in s.execute(query).all()}

    def outstanding(self, environment_id: int) -> int:
        """Tasks not finished: pending, or running under a lease (live or expired)."""
        counts = self.counts(environment_id)
        return counts.get("pending", 0) + counts.get("running", 0)

    def scope_outstanding(self, scope: Scope) -> int:
        """This scope's tasks not finished, of any kind."""
        with self.db.session() as s:
            return s.scalar(select(func.count()).select_from(TaskRow).where(
                *scope.task_filter(TaskRow), TaskRow.status.in_(("pending", "running")))) or 0

    def queued_keys(self, scope: Scope, kind: str) -> set[str]:
        with self.db.session() as s:
            return set(s.scalars(select(TaskRow.setting_key).where(*scope.task_filter(TaskRow), TaskRow.kind == kind)))


class _LeaseLost(Exception):
    pass
