"""The shared work queue: tasks claimed under leases, so many workers measure every key exactly once.

- **Tasks**: per scope (base config, environment, quality and timing protocol) a ``baseline`` task, one
  ``setting`` task per setting (its quality pass and first speed estimate), and, once the scope's settings are
  finished, ``precise`` tasks for the contenders (queued by the worker that finished the last of them).
- **Claim**: the claimable tasks are ordered by :func:`claim_key` (the pipeline the worker holds, precise timings
  first, the most expensive configuration first) and the first is taken by an UPDATE guarded by the task's state
  (on PostgreSQL the row's lock makes a second claimer re-check and move to the next; on SQLite the claim runs in
  a ``BEGIN IMMEDIATE`` transaction, which serialises claimers), so a task is never held twice.
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

from sqlalchemy import Connection, and_, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from search_space import defaults
from search_space.setting import AccelSetting
from storage.database import Database, Scope
from storage.models import BaseConfigRow, QualityTrialRow, SpeedTrialRow, TaskRow

BASELINE_KEY = AccelSetting.baseline().key
PipelineKey = tuple[str, str, str, str]
"""(pipeline, model, weights, dtype): what a loaded pipeline serves without a new build (scheduler and steps swap)."""
_PIPELINE = (BaseConfigRow.pipeline, BaseConfigRow.model, BaseConfigRow.weights, BaseConfigRow.dtype)
KIND_ORDER = {"precise": 0, "baseline": 1, "setting": 2}
"""Within what a worker holds: precise timings first (they are the tail of a configuration, queued once its settings
are done), then baselines (each unlocks its configuration's settings for every worker), then settings."""


def claim_key(kind: str, base_config_id: int, pipeline: PipelineKey, cost: float, task_id: int, *,
              held_base: int | None, held_pipeline: PipelineKey | None) -> tuple[int, int, float, int]:
    """The order in which a worker takes claimable tasks (smallest first):

    1. locality: the base configuration it holds, then any of the pipeline it holds (a scheduler or steps swap, no
       build), then the rest;
    2. kind (``KIND_ORDER``);
    3. the most expensive configuration first (``cost``: seconds per image), so that the long work starts while
       other workers can still share the rest, rather than being left for the end;
    4. queue order.

    ``sweep.study.simulate`` replays a study's tasks under this order (and under the former one) for N workers."""
    locality = 0 if base_config_id == held_base else 1 if pipeline == held_pipeline else 2
    return locality, KIND_ORDER[kind], -cost, task_id
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
        confirm_top: int, max_attempts: int = 3, cost: float = 0.0,
    ) -> int:
        """Add a task per key not queued yet (a key queued by another process meanwhile is kept); returns how many."""
        assert kind in KINDS
        if not setting_keys:
            return 0
        rows = [
            {"base_config_id": scope.base_config_id, "environment_id": scope.environment_id,
             "quality_protocol_id": scope.quality_protocol_id, "timing_protocol_id": scope.timing_protocol_id,
             "setting_key": key, "kind": kind, "measure_quality": measure_quality, "max_loss": max_loss,
             "confirm_top": confirm_top, "status": "pending", "attempts": 0, "max_attempts": max_attempts, "cost": cost}
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

    def claim(self, environment_id: int, owner: str, prefer_base_config: int | None = None,
              prefer_pipeline: PipelineKey | None = None) -> Claim | None:
        """Take the claimable task that comes first by :func:`claim_key` (the worker holds ``prefer_pipeline``
        loaded, last for ``prefer_base_config``) under a lease."""
        now = time.time()
        with self.db.engine.connect() as connection:
            self._begin(connection)
            self._expire_exhausted(connection, environment_id, now)
            query = (select(*_TASK, TaskRow.attempts, TaskRow.max_attempts, TaskRow.cost, *_PIPELINE)
                     .join(BaseConfigRow, BaseConfigRow.id == TaskRow.base_config_id)
                     .where(*self._claimable(environment_id, now)))
            candidates = sorted(connection.execute(query).all(), key=lambda r: claim_key(
                r.kind, r.base_config_id, (r.pipeline, r.model, r.weights, r.dtype), r.cost, r.id,
                held_base=prefer_base_config, held_pipeline=prefer_pipeline))
            row = None
            for candidate in candidates:  # the first still claimable: another worker may have taken one meanwhile
                claimed = connection.execute(
                    update(TaskRow).where(TaskRow.id == candidate.id, *self._claimable(environment_id, now)).values(
                        status="running", lease_owner=owner, lease_expires_at=now + self.lease_seconds,
                        attempts=TaskRow.attempts + 1)
                ).rowcount
                if claimed == 1:
                    row = candidate
                    break
            connection.commit()
        if row is None:
            return None
        scope = self.db.scope_of(row.base_config_id, row.environment_id, row.quality_protocol_id, row.timing_protocol_id)
        return Claim(row.id, scope, row.setting_key, row.kind, row.measure_quality, row.max_loss, row.confirm_top,
                     row.attempts + 1, row.max_attempts)

    def waiting_base_configs(self, environment_id: int) -> list[int]:
        """Base configurations with pending tasks that wait for their baseline (another worker is measuring it):
        what a worker with nothing to claim can load meanwhile, most expensive first."""
        now = time.time()
        with self.db.session() as s:
            rows = s.execute(select(TaskRow.base_config_id, func.max(TaskRow.cost)).where(
                TaskRow.environment_id == environment_id, TaskRow.status == "pending", TaskRow.kind != "baseline",
                ~TaskRow.id.in_(select(TaskRow.id).where(*self._claimable(environment_id, now))),
            ).group_by(TaskRow.base_config_id)).all()
        return [b for b, _ in sorted(rows, key=lambda r: -(r[1] or 0.0))]

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

    def reopen(self, scope: Scope, kind: str, setting_keys: list[str]) -> int:
        """Sets finished tasks of ``setting_keys`` pending again, attempts reset (work owed again); returns how many."""
        if not setting_keys:
            return 0
        with self.db.session() as s:
            result = s.execute(update(TaskRow).where(
                *scope.task_filter(TaskRow), TaskRow.kind == kind, TaskRow.setting_key.in_(setting_keys),
                TaskRow.status == "done").values(status="pending", attempts=0, lease_owner=None))
            return result.rowcount or 0  # type: ignore[attr-defined]

    def queued_keys(self, scope: Scope, kind: str) -> set[str]:
        with self.db.session() as s:
            return set(s.scalars(select(TaskRow.setting_key).where(*scope.task_filter(TaskRow), TaskRow.kind == kind)))


class _LeaseLost(Exception):
    pass
