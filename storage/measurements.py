"""Speed and quality records: what was measured, read back as frozen records, written as bundles of rows.

A bundle (the rows one measurement produced) is written in one transaction; a row whose key another process
stored first is skipped, so that result stands and nothing is stored twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from sqlalchemy import Delete, Update, delete, select, update

from search_space import defaults
from storage.database import Database, Scope
from storage.models import (
    Base,
    BaseConfigRow,
    QualityBaselineRow,
    QualityProtocolRow,
    QualityTrialRow,
    SpeedBaselineRow,
    SpeedConfigRow,
    SpeedTrialRow,
)

SHARED_SOURCE = "shared from "
"""How a shared first estimate's source begins; the donor row's scheduler follows."""
CHECKED_SOURCE = "checked timing set"
"""A first estimate against the speed baseline's pass, gated by one adjacent baseline run (``sweep.measurement
.speed_pass``): its interval carries ``DRIFT_TOLERANCE``, in its row's noise as in its own."""


def shared_source(first_source: str | None) -> bool:
    """A first estimate of this source was measured in a row of another scheduler with the same denoiser calls."""
    return (first_source or "").startswith(SHARED_SOURCE)


@dataclass(frozen=True)
class SpeedBaseline:
    time: float
    time_spread: float
    batch_seconds: tuple[float, ...]
    image_digests: tuple[str, ...]
    source: str
    repeat_max_pixel_diff: int | None


@dataclass(frozen=True)
class SpeedObservation:
    """One stored time per image: a speed baseline's (``settings`` empty) or a setting's (see
    :meth:`Measurements.speed_observations`)."""

    environment_id: int
    pipeline: str
    height: int
    width: int
    dtype: str
    batch_size: int
    scheduler: str
    steps: int
    settings: dict[str, dict[str, object]]
    time: float
    kind: str
    """``baseline``, ``precise`` or ``first estimate``."""
    first_source: str | None = None
    """A setting's: where its first estimate came from (a row of another scheduler with the same denoiser calls shares
    only one measured in its own row)."""

    @property
    def family(self) -> tuple[int, str, int, int, str, int]:
        """What shares a denoiser's cost per step: environment, pipeline, shape, dtype and batch (any scheduler
        and number of steps)."""
        return self.environment_id, self.pipeline, self.height, self.width, self.dtype, self.batch_size


@dataclass(frozen=True)
class SpeedResult:
    """One setting's stored speed: its first estimate and, once it could be the bound, a precise timing."""

    setting_key: str
    status: str
    reason: str | None
    weights: str
    first_speedup: float | None
    first_ci_half_width: float | None
    first_source: str | None
    first_time: float | None
    first_baseline_time: float | None
    speedup: float | None = None
    ci_half_width: float | None = None
    pairs: int | None = None
    time: float | None = None
    baseline_time: float | None = None
    weights_key: str = ""
    """Empty where the speed holds for any weights, else the weights it was measured with."""
    packages_key: str = ""
    """The versions of the setting's own packages it was measured with (empty where none)."""
    precise_stop: str | None = None
    """Why its precise timing stopped (see ``SpeedTrialRow.precise_stop``)."""
    first_host: dict[str, object] | None = None
    precise_host: dict[str, object] | None = None
    first_pairs: int | None = None
    first_log_sd: float | None = None
    row_half_width: float | None = None
    """The first estimate's half-width judged by its row's pooled noise (set by :func:`row_noise`; None where its
    row has none to pool): what decisions and tables use in place of its own few pairs' width."""

    @property
    def published_host(self) -> dict[str, object] | None:
        """The host's state over the timing its published speed-up comes from."""
        return self.precise_host if self.precise else self.first_host

    @property
    def cpu_bound(self) -> bool:
        """Its published timing ran while the GPU was mostly idle (busy < ``defaults.CPU_BOUND_BELOW``)."""
        busy = (self.published_host or {}).get("gpu_busy")
        return isinstance(busy, (int, float)) and busy < defaults.CPU_BOUND_BELOW

    @property
    def random_weights_only(self) -> bool:
        """A weight-dependent method's speed measured with random weights: stored, but not representative."""
        return self.weights_key == "random" and self.status == "done"

    @property
    def precise(self) -> bool:
        return self.speedup is not None

    @property
    def settled_below(self) -> bool:
        """Timed until its interval fell under the leader's: known to be slower, its number not precise."""
        return self.precise and self.precise_stop == "below leader"

    @property
    def shared(self) -> bool:
        """Its first estimate was measured in a row of another scheduler with the same denoiser calls."""
        return shared_source(self.first_source)

    @property
    def timing(self) -> str | None:
        """What its published speed-up is: ``precise``, ``below leader``, ``first estimate``, ``shared estimate``
        (None: none)."""
        if self.precise:
            return "below leader" if self.settled_below else "precise"
        if self.first_speedup is None:
            return None
        return "shared estimate" if self.shared else "first estimate"

    def decide(self, target: float) -> str:
        """Its speed-up against ``target``, by its interval: ``reached`` (wholly at or above), ``not reached``
        (wholly below) or ``borderline`` (the interval holds the target: more pairs would decide it)."""
        speedup = float(self.published)  # type: ignore[arg-type]
        half = self.published_half_width
        if speedup * (1 - half) >= target:
            return "reached"
        if speedup * (1 + half) < target:
            return "not reached"
        return "borderline"

    @property
    def published(self) -> float | None:
        """The precise speed-up where one exists, else the first estimate."""
        return self.speedup if self.speedup is not None else self.first_speedup

    @property
    def published_half_width(self) -> float:
        if self.precise:
            return self.ci_half_width or 0.0
        return (self.row_half_width if self.row_half_width is not None else self.first_ci_half_width) or 0.0

    @property
    def interval_source(self) -> str | None:
        """What its published interval rests on: ``pairs`` (a precise timing's), ``row noise`` (a first estimate
        judged by its row's pooled noise) or ``own pairs`` (a first estimate's own few pairs)."""
        if self.precise:
            return "pairs"
        if self.first_speedup is None:
            return None
        return "row noise" if self.row_half_width is not None else "own pairs"

    @property
    def published_time(self) -> float | None:
        return self.time if self.precise and self.time is not None else self.first_time

    @property
    def published_baseline_time(self) -> float | None:
        return self.baseline_time if self.precise and self.baseline_time is not None else self.first_baseline_time

    @property
    def usable(self) -> bool:
        return self.status == "done" and self.published is not None


@dataclass(frozen=True)
class QualityBaseline:
    scores: tuple[float, ...] | None
    clip_score: float | None
    image_digests: tuple[str, ...]
    environment_id: int
    repeat_max_pixel_diff: int | None


@dataclass(frozen=True)
class QualityResult:
    setting_key: str
    status: str
    """``done``, ``rejected`` (stopped early, above its threshold with 95% confidence) or ``failed``."""
    reason: str | None
    score_loss: float | None
    loss_low: float | None
    loss_high: float | None
    prompts_used: int | None
    rejected_at: float | None = None
    environment_id: int | None = None
    image_deviation: float | None = None

    def feasible(self, max_loss: float) -> bool:
        return self.status == "done" and self.score_loss is not None and self.score_loss <= max_loss


def real_quality(weights: str, scorer: str) -> bool:
    """Whether a CLIP score measures quality: pretrained weights, scored by a scorer that is not random."""
    return weights == "pretrained" and not scorer.endswith(":random")


def _speed_result(r: SpeedTrialRow) -> SpeedResult:
    return SpeedResult(r.setting_key, r.status, r.reason, r.weights, r.first_speedup, r.first_ci_half_width,
                       r.first_source, r.first_time, r.first_baseline_time, r.speedup, r.ci_half_width, r.pairs,
                       r.time, r.baseline_time, r.weights_key, r.packages_key, r.precise_stop, r.first_host,
                       r.precise_host, r.first_pairs, r.first_log_sd)


def speeds_for(
    rows: Iterable[SpeedResult], weights: str | None, packages: Callable[[str], str] | None = None,
) -> dict[str, SpeedResult]:
    """setting key → the speed that holds for ``weights``: one measured for any weights, or with these very
    weights (a measurement that succeeded is preferred to a failure). ``None``: every weights key, except that
    a weight-dependent method's speed from random weights counts only where nothing else is stored.

    ``packages`` (setting key → the versions of its packages installed now) keeps only speeds measured with
    those versions; without it, of the records of several package versions the newest counts (``rows`` in the
    order they were stored)."""
    def rank(r: SpeedResult) -> tuple[bool, bool]:
        return r.status == "done", not r.random_weights_only

    chosen: dict[str, SpeedResult] = {}
    for r in rows:
        if weights is not None and r.weights_key not in ("", weights):
            continue
        if packages is not None and r.packages_key != packages(r.setting_key):
            continue
        held = chosen.get(r.setting_key)
        if held is None or rank(r) > rank(held) or (rank(r) == rank(held) and r.packages_key != held.packages_key):
            chosen[r.setting_key] = r
    return row_noise(chosen)


def row_noise(speeds: Mapping[str, SpeedResult]) -> dict[str, SpeedResult]:
    """Judge each paired first estimate of one row (one scope) by the row's pooled noise, not its own few pairs.

    A first estimate is one paired pass of the timing set: with 2 or 4 prompts its own interval rests on 1 or 3
    degrees of freedom (Student's t of 12.7 or 3.2), so wide that every setting reaches the leader and is timed
    precisely. The spread of a pair's log speed-up is the machine's noise over adjacent runs, much the same for
    every setting of a row (one pipeline, shape and machine, minutes apart): pooled over the row's estimates,
    it has their degrees of freedom summed. Each estimate then gets ``t(pooled df) × max(pooled sd, own sd) /
    √pairs`` (a setting noisier than its row keeps its own spread) plus the paired margin, and a shared estimate
    the scheduler margin too, a checked estimate the drift tolerance too, but never wider than its own interval:
    one pass hit by a slow stretch inflates the pooled spread of the whole row (sums of squares), and where a
    row's passes have several pairs each their own intervals may already be the narrower. Estimates stored before
    pairs were recorded keep their own width."""
    noisy = [s for s in speeds.values() if s.status == "done" and s.first_pairs and s.first_pairs >= 2
             and s.first_log_sd is not None and s.first_speedup is not None]
    df = sum(s.first_pairs - 1 for s in noisy)  # type: ignore[operator]
    if df < 2:
        return dict(speeds)
    pooled = math.sqrt(sum((s.first_pairs - 1) * s.first_log_sd ** 2 for s in noisy) / df)  # type: ignore[operator]
    t = _t975(df)
    out = dict(speeds)
    for s in noisy:
        margin = defaults.PAIRED_FIRST_MARGIN + (defaults.SHARED_MARGIN if s.shared else 0.0) + \
            (defaults.DRIFT_TOLERANCE if s.first_source == CHECKED_SOURCE else 0.0)
        half = math.expm1(t * max(pooled, s.first_log_sd) / math.sqrt(s.first_pairs)) + margin  # type: ignore[arg-type,type-var,operator]
        out[s.setting_key] = replace(s, row_half_width=min(half, s.first_ci_half_width or math.inf))
    return out


def _t975(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(1 - (1 - defaults.CONFIDENCE) / 2, df))


def _quality_result(r: QualityTrialRow) -> QualityResult:
    return QualityResult(r.setting_key, r.status, r.reason, r.score_loss, r.loss_low, r.loss_high, r.prompts_used,
                         r.rejected_at, r.environment_id, r.image_deviation)


class Measurements:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- reads --------------------------------------------------------------------------------------------

    def speed_baseline(self, scope: Scope) -> SpeedBaseline | None:
        with self.db.session() as s:
            r = s.scalar(select(SpeedBaselineRow).where(*scope.speed_filter(SpeedBaselineRow)))
            if r is None:
                return None
            return SpeedBaseline(r.time, r.time_spread, tuple(r.batch_seconds), tuple(r.image_digests), r.source,
                                 r.repeat_max_pixel_diff)

    def speeds(
        self, scope: Scope, weights: str | None = None, packages: Callable[[str], str] | None = None,
    ) -> dict[str, SpeedResult]:
        """The scope's speeds that hold for ``weights`` and ``packages`` (see :func:`speeds_for`)."""
        with self.db.session() as s:
            rows = [_speed_result(r) for r in s.scalars(
                select(SpeedTrialRow).where(*scope.speed_filter(SpeedTrialRow)).order_by(SpeedTrialRow.id))]
        return speeds_for(rows, weights, packages)

    def quality_baseline(self, scope: Scope) -> QualityBaseline | None:
        with self.db.session() as s:
            r = s.scalar(select(QualityBaselineRow).where(*scope.quality_filter(QualityBaselineRow)))
            if r is None:
                return None
            return QualityBaseline(tuple(r.scores) if r.scores is not None else None, r.clip_score,
                                   tuple(r.image_digests), r.environment_id, r.repeat_max_pixel_diff)

    def qualities(self, scope: Scope) -> dict[str, QualityResult]:
        return self.qualities_of(scope.base_config_id, scope.quality_protocol_id)

    def qualities_of(self, base_config_id: int, quality_protocol_id: int) -> dict[str, QualityResult]:
        with self.db.session() as s:
            rows = s.scalars(select(QualityTrialRow).where(QualityTrialRow.base_config_id == base_config_id,
                                                           QualityTrialRow.quality_protocol_id == quality_protocol_id))
            return {r.setting_key: _quality_result(r) for r in rows}

    def quality_sources(self, speed_config_id: int) -> list[tuple[int, int]]:
        """(base config, quality protocol) pairs with real quality (pretrained weights, a real scorer) whose base
        config has this speed config."""
        with self.db.session() as s:
            rows = s.execute(
                select(QualityBaselineRow.base_config_id, QualityBaselineRow.quality_protocol_id, BaseConfigRow.weights,
                       QualityProtocolRow.scorer)
                .join(BaseConfigRow, BaseConfigRow.id == QualityBaselineRow.base_config_id)
                .join(QualityProtocolRow, QualityProtocolRow.id == QualityBaselineRow.quality_protocol_id)
                .where(BaseConfigRow.speed_config_id == speed_config_id)
                .order_by(QualityBaselineRow.id)
            ).all()
        return [(b, q) for b, q, weights, scorer in rows if real_quality(weights, scorer)]

    def sibling_estimates(self, scope: Scope, setting_key: str, packages_key: str,
                          sources: Sequence[str]) -> list[tuple[str, SpeedResult]]:
        """First estimates of ``setting_key`` measured (``first_source`` among ``sources``, never a shared one) in this
        environment and timing protocol for speed configurations that differ from the scope's in the scheduler
        alone: (their scheduler, the speed), earliest first. Which schedulers make the same denoiser calls is the
        caller's to decide."""
        with self.db.session() as s:
            own = s.get(SpeedConfigRow, scope.speed_config_id)
            assert own is not None
            rows = s.execute(
                select(SpeedConfigRow.scheduler, SpeedTrialRow).join(
                    SpeedConfigRow, SpeedConfigRow.id == SpeedTrialRow.speed_config_id).where(
                    SpeedConfigRow.id != own.id, SpeedConfigRow.pipeline == own.pipeline,
                    SpeedConfigRow.steps == own.steps, SpeedConfigRow.height == own.height,
                    SpeedConfigRow.width == own.width, SpeedConfigRow.dtype == own.dtype,
                    SpeedConfigRow.batch_size == own.batch_size, SpeedConfigRow.scheduler != own.scheduler,
                    SpeedTrialRow.environment_id == scope.environment_id,
                    SpeedTrialRow.timing_protocol_id == scope.timing_protocol_id,
                    SpeedTrialRow.setting_key == setting_key, SpeedTrialRow.status == "done",
                    SpeedTrialRow.weights_key == "", SpeedTrialRow.packages_key == packages_key,
                    SpeedTrialRow.first_source.in_(list(sources)), SpeedTrialRow.first_speedup.is_not(None),
                ).order_by(SpeedTrialRow.id)).all()
            return [(scheduler, _speed_result(t)) for scheduler, t in rows]

    def speed_observations(self, environment_ids: Sequence[int] | None = None) -> list[SpeedObservation]:
        """Every stored speed baseline and every setting's speed with its row's baseline time, in the environments
        named (None: all): what a speed model is fitted to. A setting's time is its row's baseline time over its
        speed-up (precise where timed precisely, else its paired first estimate), so it holds against the same
        baseline time even where the machine drifted between the passes."""
        out: list[SpeedObservation] = []
        with self.db.session() as s:
            base_q = select(SpeedBaselineRow, SpeedConfigRow).join(
                SpeedConfigRow, SpeedConfigRow.id == SpeedBaselineRow.speed_config_id)
            trial_q = select(SpeedTrialRow).where(SpeedTrialRow.status == "done")
            if environment_ids is not None:
                base_q = base_q.where(SpeedBaselineRow.environment_id.in_(environment_ids))
                trial_q = trial_q.where(SpeedTrialRow.environment_id.in_(environment_ids))
            baselines: dict[tuple[int, int, int], tuple[float, SpeedConfigRow]] = {}
            for b, c in s.execute(base_q.order_by(SpeedBaselineRow.id)).all():
                baselines[(b.speed_config_id, b.environment_id, b.timing_protocol_id)] = (b.time, c)
                out.append(SpeedObservation(b.environment_id, c.pipeline, c.height, c.width, c.dtype, c.batch_size,
                                            c.scheduler, c.steps, {}, b.time, "baseline"))
            for t in s.scalars(trial_q.order_by(SpeedTrialRow.id)):
                held = baselines.get((t.speed_config_id, t.environment_id, t.timing_protocol_id))
                speedup = t.speedup if t.speedup is not None else t.first_speedup
                if held is None or not speedup or (t.speedup is None and shared_source(t.first_source)):
                    continue  # a shared estimate was measured in another row: it is that row's observation
                time, c = held
                out.append(SpeedObservation(t.environment_id, c.pipeline, c.height, c.width, c.dtype, c.batch_size,
                                            c.scheduler, c.steps, dict(t.settings), time / speedup,
                                            "precise" if t.speedup is not None else "first estimate", t.first_source))
        return out

    # -- rows (a bundle is written by save(), or inside a queue task's completing transaction) --------------

    @staticmethod
    def speed_baseline_row(
        scope: Scope, *, time: float, time_spread: float, batch_seconds: Sequence[float], source: str,
        image_digests: Sequence[str], weights: str, worker: str, warmup_runs: int = 0,
        repeat_max_pixel_diff: int | None = None, host: dict[str, object] | None = None,
    ) -> SpeedBaselineRow:
        return SpeedBaselineRow(
            speed_config_id=scope.speed_config_id, environment_id=scope.environment_id,
            timing_protocol_id=scope.timing_protocol_id, time=time, time_spread=time_spread,
            batch_seconds=list(batch_seconds), source=source, image_digests=list(image_digests), weights=weights,
            worker=worker, warmup_runs=warmup_runs, repeat_max_pixel_diff=repeat_max_pixel_diff, host=host,
        )

    @staticmethod
    def speed_trial_row(scope: Scope, *, settings: dict[str, dict[str, object]], setting_key: str, **fields: object) -> SpeedTrialRow:
        return SpeedTrialRow(
            speed_config_id=scope.speed_config_id, environment_id=scope.environment_id,
            timing_protocol_id=scope.timing_protocol_id, setting_key=setting_key, settings=settings, **fields,
        )

    @staticmethod
    def quality_baseline_row(
        scope: Scope, *, scores: Sequence[float] | None, image_digests: Sequence[str], worker: str,
        repeat_max_pixel_diff: int | None = None,
    ) -> QualityBaselineRow:
        return QualityBaselineRow(
            base_config_id=scope.base_config_id, quality_protocol_id=scope.quality_protocol_id,
            scores=list(scores) if scores is not None else None,
            clip_score=sum(scores) / len(scores) if scores else None, image_digests=list(image_digests),
            repeat_max_pixel_diff=repeat_max_pixel_diff, environment_id=scope.environment_id, worker=worker,
        )

    @staticmethod
    def quality_trial_row(scope: Scope, *, settings: dict[str, dict[str, object]], setting_key: str, **fields: object) -> QualityTrialRow:
        return QualityTrialRow(
            base_config_id=scope.base_config_id, quality_protocol_id=scope.quality_protocol_id,
            environment_id=scope.environment_id, setting_key=setting_key, settings=settings, **fields,
        )

    def save(self, rows: Sequence[Base]) -> list[bool]:
        """Write one measurement's rows in one transaction; False for a row whose key was stored already."""
        if not rows:
            return []
        with self.db.session() as s:
            return self.db.insert_ignore(s, rows)

    @staticmethod
    def precise_statement(
        scope: Scope, setting_key: str, *, speedup: float, ci_half_width: float, pairs: int, time: float,
        baseline_time: float, time_spread: float, warmup_runs: int, precise_stop: str | None = None,
        host: dict[str, object] | None = None, weights_key: str = "", packages_key: str = "",
    ) -> Update:
        """The update that records a precise timing on the setting's speed record."""
        return (update(SpeedTrialRow).where(*scope.speed_filter(SpeedTrialRow), SpeedTrialRow.setting_key == setting_key,
                                            SpeedTrialRow.weights_key == weights_key,
                                            SpeedTrialRow.packages_key == packages_key)
                .values(speedup=speedup, ci_half_width=ci_half_width, pairs=pairs, time=time, baseline_time=baseline_time,
                        time_spread=time_spread, warmup_runs=warmup_runs, precise_stop=precise_stop, precise_host=host,
                        precise_at=datetime.now(timezone.utc)))

    def save_precise(self, *statements: Update) -> list[int]:
        """Stores precise timings (made together) in one transaction; returns how many speed records each one updated
        (0: no stored speed of that key, weights and packages)."""
        with self.db.session() as s:
            return [s.execute(statement).rowcount for statement in statements]  # type: ignore[attr-defined]

    @staticmethod
    def replace_quality_statement(scope: Scope, setting_key: str) -> Delete:
        """Deletes a setting's quality record so that a fuller pass can take its place (a rejection against a
        stricter threshold says nothing about a looser one)."""
        return delete(QualityTrialRow).where(*scope.quality_filter(QualityTrialRow), QualityTrialRow.setting_key == setting_key)
