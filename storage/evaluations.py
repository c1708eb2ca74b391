"""Graded solutions: stored once per (task content, solution SHA-256, environment, grading protocol)."""

from __future__ import annotations

from sqlalchemy import select

from storage.database import Database
from storage.models import EnvironmentRow, EvaluationRow


class Evaluations:
    def __init__(self, db: Database) -> None:
        self.db = db

    def stored_keys(self, environment_id: int, protocol_key: str) -> set[tuple[str, str]]:
        """(task key, solution SHA-256) of every evaluation stored for this environment and protocol."""
        with self.db.session() as s:
            rows = s.execute(select(EvaluationRow.task_key, EvaluationRow.solution_sha256).where(
                EvaluationRow.environment_id == environment_id, EvaluationRow.protocol_key == protocol_key)).all()
        return {(k, h) for k, h in rows}

    def save(self, row: EvaluationRow) -> bool:
        """Store one evaluation in its own transaction; False when the same key was stored first (by another run)."""
        with self.db.session() as s:
            return self.db.insert_ignore(s, [row])[0]

    def rows(self, *, environment_id: int | None = None, protocol_key: str | None = None,
             keys: set[tuple[str, str]] | None = None) -> list[dict[str, object]]:
        """Stored evaluations (oldest first), each with its environment's device name."""
        query = select(EvaluationRow, EnvironmentRow.device).join(
            EnvironmentRow, EnvironmentRow.id == EvaluationRow.environment_id).order_by(EvaluationRow.id)
        if environment_id is not None:
            query = query.where(EvaluationRow.environment_id == environment_id)
        if protocol_key is not None:
            query = query.where(EvaluationRow.protocol_key == protocol_key)
        with self.db.session() as s:
            found = s.execute(query).all()
        out = []
        for row, device in found:
            if keys is not None and (row.task_key, row.solution_sha256) not in keys:
                continue
            out.append({"id": row.id, "task_id": row.task_id, "task_key": row.task_key,
                        "solution_sha256": row.solution_sha256, "environment_id": row.environment_id, "device": device,
                        "protocol_key": row.protocol_key, "difficulty": row.difficulty, "target": row.target,
                        "passed": row.passed, "failure_reason": row.failure_reason, "seed": row.seed,
                        "solution_path": row.solution_path, "gt_path": row.gt_path, "result": dict(row.result),
                        "created_at": row.created_at.isoformat() if row.created_at else None})
        return out
