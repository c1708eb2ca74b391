"""Repository: one database, its stores by concern, and the few queries that span them.

- ``Database`` (storage/database.py): engine, transactions, identities, scopes;
- ``measurements`` (storage/measurements.py): speed and quality records;
- ``bounds`` (storage/bounds.py): the upper bound as their join, and the speed map;
- ``targets`` (storage/targets.py): targets for tasks;
- ``evaluations`` (storage/evaluations.py): graded solutions.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from storage.bounds import Bounds
from storage.database import Database, Scope
from storage.evaluations import Evaluations
from storage.measurements import Measurements
from storage.models import (
    BaseConfigRow,
    QualityBaselineRow,
    QualityTrialRow,
    SearchRow,
    SpeedBaselineRow,
    SpeedTrialRow,
    TaskRow,
)
from storage.targets import Targets


class Repository(Database):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.measurements = Measurements(self)
        self.bounds = Bounds(self)
        self.targets = Targets(self, self.bounds)
        self.evaluations = Evaluations(self)

    def save_search(
        self, scope: Scope, *, strategy: str, max_loss: float, seed: int, evaluated: int, space_size: int, stop: str,
        best_setting_key: str | None, study_name: str | None, log: list[str],
    ) -> None:
        """Record (or update) how a strategy searched this scope for this threshold."""
        fields = dict(seed=seed, evaluated=evaluated, space_size=space_size, stop=stop, best_setting_key=best_setting_key,
                      study_name=study_name, log=log, updated_at=datetime.now(timezone.utc))
        where = (*scope.task_filter(SearchRow), SearchRow.strategy == strategy, SearchRow.max_loss == max_loss)
        for _ in range(2):
            try:
                with self.session() as s:
                    row = s.scalar(select(SearchRow).where(*where))
                    if row is None:
                        s.add(SearchRow(base_config_id=scope.base_config_id, environment_id=scope.environment_id,
                                        quality_protocol_id=scope.quality_protocol_id,
                                        timing_protocol_id=scope.timing_protocol_id, strategy=strategy, max_loss=max_loss,
                                        **fields))
                    else:
                        for k, v in fields.items():
                            setattr(row, k, v)
                return
            except IntegrityError:  # another worker inserted it first: update theirs
                continue

    def status(self) -> dict[str, object]:
        with self.session() as s:
            def count(model: type) -> int:
                return s.scalar(select(func.count()).select_from(model)) or 0

            def by_status(model: type) -> dict[str, int]:
                return dict(Counter(dict(s.execute(select(model.status, func.count()).group_by(model.status)).all())))

            return {
                "base_configs": count(BaseConfigRow),
                "speed": {"baselines": count(SpeedBaselineRow), "trials": by_status(SpeedTrialRow),
                          "precise": s.scalar(select(func.count()).select_from(SpeedTrialRow).where(
                              SpeedTrialRow.speedup.is_not(None),
                              SpeedTrialRow.precise_stop.is_distinct_from("below leader"))) or 0,
                          "below_leader": s.scalar(select(func.count()).select_from(SpeedTrialRow).where(
                              SpeedTrialRow.precise_stop == "below leader")) or 0},
                "quality": {"baselines": count(QualityBaselineRow), "trials": by_status(QualityTrialRow)},
                "tasks": by_status(TaskRow),
            }
