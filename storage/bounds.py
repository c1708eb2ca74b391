"""The upper bound as a join: speed from one (speed config, environment, timing protocol), quality from any
(base config, quality protocol) of the same speed config, wherever each was measured.

Per speed scope and quality source, the bound is the fastest setting whose known score loss is within
max-loss (its precise timing where one exists, else its first estimate, labelled so). A speed scope with no
quality from anywhere gives a **speed map** row instead: the fastest setting, quality unknown, never the
baseline passed off as a 1.00x bound.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

from sqlalchemy import select

from search_space.base_config import BaseConfig, SpeedConfig
from storage.database import Database, base_from_row
from storage.measurements import (
    QualityResult,
    SpeedResult,
    _quality_result,
    _speed_result,
    real_quality,
    speeds_for,
)
from storage.models import (
    QualityBaselineRow,
    QualityTrialRow,
    SpeedBaselineRow,
    SpeedConfigRow,
    SpeedTrialRow,
)

IMPORTED = "imported:"
"""Key prefix of the environment and protocols an import creates."""


def usable_speeds(rows: list[SpeedResult], model: str | None, weight_dependent: bool) -> dict[str, SpeedResult]:
    """The speeds that hold for a quality source's weights (``model``; None for a speed map). A weight-dependent
    method's speed measured with random weights is left out unless ``weight_dependent`` asks for it."""
    chosen = speeds_for(rows, model)
    if weight_dependent:
        for key, r in speeds_for(rows, "random").items():
            chosen.setdefault(key, r)
    return {k: r for k, r in chosen.items() if weight_dependent or not r.random_weights_only}


def candidates(speeds: Mapping[str, SpeedResult], quality: Mapping[str, QualityResult] | None, max_loss: float) -> list[SpeedResult]:
    """Settings that may be the bound, fastest first: a usable speed and, unless quality is unknown everywhere
    (``None``), a known score loss within ``max_loss``."""
    usable = [s for s in speeds.values() if s.usable and (quality is None or (
        s.setting_key in quality and quality[s.setting_key].feasible(max_loss)))]
    return sorted(usable, key=lambda s: (-float(s.published), quality[s.setting_key].score_loss if quality else 0.0, s.setting_key))  # type: ignore[operator]


def contenders(speeds: Mapping[str, SpeedResult], quality: Mapping[str, QualityResult] | None, max_loss: float) -> list[SpeedResult]:
    """Candidates that can still be the bound: the leader, and every candidate whose interval reaches the leader's.

    Precise timing is spent on these only; once the leader is precise and no first estimate's interval reaches
    its own, the bound is settled.
    """
    ranked = candidates(speeds, quality, max_loss)
    if not ranked:
        return []
    leader = ranked[0]
    floor = float(leader.published) * (1 - leader.published_half_width)
    return [s for s in ranked if float(s.published) * (1 + s.published_half_width) >= floor]


@dataclass(frozen=True)
class QualitySource:
    base_config_id: int
    quality_protocol_id: int
    base: BaseConfig
    scorer: str
    prompt_source: str
    prompt_count: int
    device: str
    """Where its images were generated (quality does not depend on the machine)."""
    repeat_max_pixel_diff: int | None
    imported: bool = False
    """Score losses read from a legacy file, not measured by sweep."""

    def describe(self) -> str:
        return f"{self.scorer} on {self.prompt_count} {self.prompt_source} prompts ({self.base.model}; from {self.device})"


@dataclass(frozen=True)
class Bound:
    """One row of the join: a speed scope with one quality source (or none: a speed map row)."""

    speed_config: SpeedConfig
    speed_config_id: int
    environment_id: int
    timing_protocol_id: int
    device: str
    speed_weights: str
    quality: QualitySource | None
    max_loss: float
    best: SpeedResult | None
    best_quality: QualityResult | None
    baseline_time: float
    trials: int
    repeat_max_pixel_diff: int | None
    speed_imported: bool = False
    """Speeds read from a legacy file, not measured by sweep."""
    weight_dependent: bool = False
    """Whether a weight-dependent method's speed measured with random weights was let in (``rows``'s flag)."""

    @property
    def quality_known(self) -> bool:
        return self.quality is not None

    @property
    def speedup(self) -> float | None:
        """The bound: the best setting's published speed-up; 1.0 when quality is known and nothing is within
        max-loss; None for a speed map with nothing measured."""
        if self.best is not None:
            return self.best.published
        return 1.0 if self.quality_known else None

    @property
    def confirmed(self) -> bool:
        """The bound's setting is timed precisely (not a first estimate, nor a timing settled below a leader)."""
        return self.best is not None and self.best.precise and not self.best.settled_below

    @property
    def settings(self) -> dict[str, dict[str, object]]:
        return json.loads(self.best.setting_key) if self.best else {}

    @property
    def score_loss(self) -> float | None:
        if not self.quality_known:
            return None
        return self.best_quality.score_loss if self.best_quality else 0.0

    def as_row(self) -> dict[str, object]:
        best, q = self.best, self.quality
        diff = self.repeat_max_pixel_diff if q is None else q.repeat_max_pixel_diff
        return {
            "pipeline": self.speed_config.pipeline, "scheduler": self.speed_config.scheduler,
            "steps": self.speed_config.steps, "height": self.speed_config.height, "width": self.speed_config.width,
            "dtype": self.speed_config.dtype, "batch_size": self.speed_config.batch_size,
            "device": self.device, "environment_id": self.environment_id,
            "quality_known": self.quality_known,
            "kind": "upper bound" if self.quality_known else "speed map",
            "speed_source": {"device": self.device, "weights": self.speed_weights,
                             "timing": None if best is None else best.timing,
                             "weight_dependent_random": bool(best and best.random_weights_only)},
            "quality_source": None if q is None else {
                "model": q.base.model, "weights": q.base.weights, "scorer": q.scorer, "prompts": q.prompt_source,
                "prompt_count": q.prompt_count, "device": q.device},
            "max_loss": self.max_loss,
            "speedup": self.speedup,
            "first_speedup": best.first_speedup if best else None,
            "confirmed": self.confirmed,
            "timing": None if best is None else best.timing,
            "ci_half_width": best.published_half_width if best else None,
            "ci_from": best.interval_source if best else None,
            "score_loss": self.score_loss,
            "score_loss_ci": None if self.best_quality is None or self.best_quality.loss_low is None else
            [self.best_quality.loss_low, self.best_quality.loss_high],
            "time": best.published_time if best else self.baseline_time,
            "baseline_time": best.published_baseline_time if best and best.published_baseline_time else self.baseline_time,
            "settings": self.settings,
            "trials": self.trials,
            "deterministic": None if diff is None else diff == 0,
            "repeat_max_pixel_diff": diff,
            "host": best.published_host if best else None,
            "cpu_bound": bool(best and best.cpu_bound),
        }


class Bounds:
    def __init__(self, db: Database) -> None:
        self.db = db

    def rows(
        self, max_loss: float, *, environment_ids: Collection[int] | None = None,
        speed_config_ids: Collection[int] | None = None, speed_only: bool = False, unreal_quality: bool = False,
        weight_dependent: bool = False,
    ) -> list[Bound]:
        """Every (speed scope × quality source) bound, or the speed map where no quality is known.

        ``speed_only`` gives every speed scope's speed map, whatever quality exists. Scores of random weights or
        a random scorer are never quality: such a source joins nothing unless ``unreal_quality`` (benchmarks
        that measure the quality pass's cost in a throwaway database). The speed of a method that depends on
        the weights (DBCache-style), measured with random weights, enters only with ``weight_dependent``.
        """
        with self.db.session() as s:
            query = select(SpeedBaselineRow)
            if environment_ids is not None:
                query = query.where(SpeedBaselineRow.environment_id.in_(list(environment_ids)))
            if speed_config_ids is not None:
                query = query.where(SpeedBaselineRow.speed_config_id.in_(list(speed_config_ids)))
            baselines = s.scalars(query).all()
            configs = {c.id: c for c in s.scalars(select(SpeedConfigRow))}
            measured: dict[tuple[int, int, int], list[SpeedResult]] = defaultdict(list)
            for t in s.scalars(select(SpeedTrialRow).order_by(SpeedTrialRow.id)):
                measured[(t.speed_config_id, t.environment_id, t.timing_protocol_id)].append(_speed_result(t))
            sources: dict[int, list[QualitySource]] = defaultdict(list)
            if not speed_only:
                for qb in s.scalars(select(QualityBaselineRow).order_by(QualityBaselineRow.id)):
                    base = qb.base_config
                    proto = qb.quality_protocol
                    if not unreal_quality and not real_quality(base.weights, proto.scorer):
                        continue
                    sources[base.speed_config_id].append(QualitySource(
                        qb.base_config_id, qb.quality_protocol_id, base_from_row(base), proto.scorer, proto.prompt_source,
                        proto.prompt_count, qb.environment.device, qb.repeat_max_pixel_diff,
                        imported=proto.key.startswith(IMPORTED)))
            qualities: dict[tuple[int, int], dict[str, QualityResult]] = defaultdict(dict)
            for q in s.scalars(select(QualityTrialRow)):
                qualities[(q.base_config_id, q.quality_protocol_id)][q.setting_key] = _quality_result(q)
            out: list[Bound] = []
            for b in baselines:
                rows = measured[(b.speed_config_id, b.environment_id, b.timing_protocol_id)]
                c = configs[b.speed_config_id]
                speed = SpeedConfig(c.pipeline, c.scheduler, c.steps, c.height, c.width, c.dtype, c.batch_size)
                for source in sources.get(c.id) or [None]:
                    scope_speeds = usable_speeds(rows, None if source is None else source.base.model, weight_dependent)
                    quality = None if source is None else qualities[(source.base_config_id, source.quality_protocol_id)]
                    ranked = candidates(scope_speeds, quality, max_loss)
                    best = ranked[0] if ranked else None
                    out.append(Bound(
                        speed_config=speed, speed_config_id=c.id, environment_id=b.environment_id,
                        timing_protocol_id=b.timing_protocol_id, device=b.environment.device, speed_weights=b.weights,
                        quality=source, max_loss=max_loss, best=best,
                        best_quality=quality.get(best.setting_key) if quality and best else None, baseline_time=b.time,
                        trials=sum(1 for r in scope_speeds.values() if r.usable), repeat_max_pixel_diff=b.repeat_max_pixel_diff,
                        speed_imported=b.environment.key.startswith(IMPORTED), weight_dependent=weight_dependent,
                    ))
        out.sort(key=lambda r: (r.speed_config.pipeline, r.speed_config.scheduler, r.speed_config.steps,
                                r.speed_config.key, r.device, r.environment_id, r.timing_protocol_id,
                                r.quality.base_config_id if r.quality else 0, r.quality.quality_protocol_id if r.quality else 0))
        return out

    def speeds(self, bound: Bound) -> dict[str, SpeedResult]:
        with self.db.session() as s:
            rows = [_speed_result(r) for r in s.scalars(select(SpeedTrialRow).where(
                SpeedTrialRow.speed_config_id == bound.speed_config_id, SpeedTrialRow.environment_id == bound.environment_id,
                SpeedTrialRow.timing_protocol_id == bound.timing_protocol_id).order_by(SpeedTrialRow.id))]
        return usable_speeds(rows, bound.quality.base.model if bound.quality else None, bound.weight_dependent)

    def qualities(self, bound: Bound) -> dict[str, QualityResult] | None:
        if bound.quality is None:
            return None
        with self.db.session() as s:
            rows = s.scalars(select(QualityTrialRow).where(
                QualityTrialRow.base_config_id == bound.quality.base_config_id,
                QualityTrialRow.quality_protocol_id == bound.quality.quality_protocol_id))
            return {r.setting_key: _quality_result(r) for r in rows}

    def reaching(self, bound: Bound, target: float) -> tuple[SpeedResult, QualityResult] | None:
        """The setting with the least score loss among those within max-loss whose speed-up reaches ``target``."""
        quality = self.qualities(bound)
        if quality is None:
            return None
        hit = self.decided(bound, target)
        return None if hit is None or hit[2] == "not reached" else (hit[0], hit[1])

    def decided(self, bound: Bound, target: float) -> tuple[SpeedResult, QualityResult, str] | None:
        """The setting within max-loss that reaches ``target`` with the least score loss, decided by its interval:
        one wholly at or above the target (``reached``) before one whose interval holds it (``borderline``);
        where neither is, the fastest, ``not reached``. None where quality is unknown or nothing is within max-loss.
        """
        quality = self.qualities(bound)
        if quality is None:
            return None
        ranked = candidates(self.speeds(bound), quality, bound.max_loss)
        for decision in ("reached", "borderline"):
            hits = [s for s in ranked if s.decide(target) == decision]
            if hits:
                best = min(hits, key=lambda s: (quality[s.setting_key].score_loss, -float(s.published)))  # type: ignore[arg-type,return-value]
                return best, quality[best.setting_key], decision
        return (ranked[0], quality[ranked[0].setting_key], "not reached") if ranked else None

    def by_target(self, target: float, max_loss: float, environment_ids: Collection[int] | None = None, *,
                  weight_dependent: bool = False) -> list[dict[str, object]]:
        """Per bound with known quality: the least-loss setting reaching ``target``, or the best there is."""
        rows = []
        for bound in self.rows(max_loss, environment_ids=environment_ids, weight_dependent=weight_dependent):
            if not bound.quality_known:
                continue
            hit = self.decided(bound, target)
            decision = "not reached" if hit is None else hit[2]
            shown = bound if hit is None or decision == "not reached" else replace(bound, best=hit[0], best_quality=hit[1])
            rows.append({**shown.as_row(), "target": target, "reachable": decision != "not reached",
                         "decision": decision})
        return rows

