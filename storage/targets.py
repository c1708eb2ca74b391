"""Targets for tasks: each confirmed upper bound with known quality gives a target per difficulty,
floor(u × factor × 10) / 10, stored with the bound it came from; a changed bound makes its targets stale."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping

from sqlalchemy import select

from storage.bounds import Bound, Bounds
from storage.database import Database, base_from_row
from storage.models import BaseConfigRow, TargetRow

SCHEDULER_NAMES = {
    "DDIMScheduler": "DDIM", "DPMSolverMultistepScheduler": "DPM-Solver++", "UniPCMultistepScheduler": "UniPC",
    "EulerDiscreteScheduler": "Euler", "EulerAncestralDiscreteScheduler": "Euler a", "PNDMScheduler": "PNDM",
    "LMSDiscreteScheduler": "LMS", "HeunDiscreteScheduler": "Heun", "DEISMultistepScheduler": "DEIS",
}


def target_for(upper_bound: float, factor: float) -> float:
    """floor(u × factor × 10) / 10, computed so that 9.6 stays 9.6 despite binary floating point."""
    return math.floor(round(upper_bound * factor * 10, 9)) / 10


def scheduler_name(scheduler: str) -> str:
    return SCHEDULER_NAMES.get(scheduler, scheduler.removesuffix("Scheduler"))


def task_sentence(pipeline: str, scheduler: str, steps: int, target: float) -> str:
    return (f"Take an {pipeline} pipeline ({scheduler_name(scheduler)}, {steps} steps) as the baseline, "
            f"and achieve a {target:g}x speedup")


def _bound_key(b: Bound) -> tuple[int, int, int, int]:
    assert b.quality is not None
    return (b.quality.base_config_id, b.quality.quality_protocol_id, b.environment_id, b.timing_protocol_id)


class Targets:
    def __init__(self, db: Database, bounds: Bounds) -> None:
        self.db = db
        self.bounds = bounds

    def set_targets(self, factors: Mapping[str, float], max_loss: float, *, refresh: bool = False) -> list[dict[str, object]]:
        """Create the targets of every confirmed bound with known quality that has none; with ``refresh``,
        recompute the stale ones. Returns every stored target at ``max_loss``."""
        for bound in self.bounds.rows(max_loss):
            if not bound.quality_known or not bound.confirmed or bound.speedup is None:
                continue
            base_id, proto_id, env_id, timing_id = _bound_key(bound)
            with self.db.session() as s:
                for difficulty, factor in factors.items():
                    row = s.scalar(select(TargetRow).where(
                        TargetRow.base_config_id == base_id, TargetRow.quality_protocol_id == proto_id,
                        TargetRow.environment_id == env_id, TargetRow.timing_protocol_id == timing_id,
                        TargetRow.max_loss == max_loss, TargetRow.difficulty == difficulty))
                    if row is not None and not (refresh and row.upper_bound != bound.speedup):
                        continue
                    target = target_for(bound.speedup, factor)
                    hit = self.bounds.reaching(bound, target)
                    if row is None:
                        row = TargetRow(base_config_id=base_id, quality_protocol_id=proto_id, environment_id=env_id,
                                        timing_protocol_id=timing_id, max_loss=max_loss, difficulty=difficulty)
                        s.add(row)
                    row.factor, row.target, row.upper_bound = factor, target, bound.speedup
                    row.setting_key, row.origin = (hit[0].setting_key if hit else None), "sweep"
        return self.targets(max_loss)

    def targets(self, max_loss: float | None = None) -> list[dict[str, object]]:
        """Every stored target with the bound it came from, the bound now, and whether it is stale."""
        current: dict[float, dict[tuple[int, int, int, int], Bound]] = {}
        out = []
        with self.db.session() as s:
            query = select(TargetRow).order_by(TargetRow.id)
            if max_loss is not None:
                query = query.where(TargetRow.max_loss == max_loss)
            for t in s.scalars(query):
                if t.max_loss not in current:
                    current[t.max_loss] = {_bound_key(b): b for b in self.bounds.rows(t.max_loss) if b.quality_known}
                bound = current[t.max_loss].get((t.base_config_id, t.quality_protocol_id, t.environment_id, t.timing_protocol_id))
                base = base_from_row(s.get(BaseConfigRow, t.base_config_id))  # type: ignore[arg-type]
                speed = quality = None
                if bound is not None and t.setting_key is not None:
                    speed = self.bounds.speeds(bound).get(t.setting_key)
                    quality = (self.bounds.qualities(bound) or {}).get(t.setting_key)
                now = bound.speedup if bound else None
                out.append({
                    "task_id": f"{base.pipeline}-{scheduler_name(base.scheduler)}-{base.steps}-{t.difficulty}-e{t.environment_id}",
                    "pipeline": base.pipeline, "scheduler": base.scheduler, "steps": base.steps,
                    "base_config": dataclasses.asdict(base), "difficulty": t.difficulty, "factor": t.factor, "target": t.target, "max_loss": t.max_loss,
                    "sentence": task_sentence(base.pipeline, base.scheduler, base.steps, t.target),
                    "upper_bound": t.upper_bound, "current_upper_bound": now,
                    "stale": t.upper_bound is not None and now is not None and now != t.upper_bound,
                    "settings": json.loads(t.setting_key) if t.setting_key else None,
                    "setting_speedup": speed.published if speed else None,
                    "setting_time": speed.published_time if speed else None,
                    "setting_score_loss": quality.score_loss if quality else None,
                    "device": bound.device if bound else None, "origin": t.origin,
                })
        return out
