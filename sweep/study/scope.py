"""One base configuration measured in one environment: what is stored, what is missing, and the rows that
measuring the missing part produces.

Quality is measured where it means something (pretrained weights and a real scorer); speed is always
measured. Measuring returns rows instead of writing them, so a single process writes each bundle in its own
transaction and a queue worker writes it in the transaction that completes its task.
"""

from __future__ import annotations

import functools
import logging
import zlib
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from search_space import defaults
from search_space.base_config import BaseConfig
from search_space.setting import AccelSetting
from storage import Repository, Scope
from storage.bounds import contenders
from storage.measurements import SHARED_SOURCE, QualityResult
from storage.models import Base
from sweep.accelerators import AppliedSetting, describe, setting_packages_key, speed_depends_on_weights
from sweep.errors import AcceleratorError
from sweep.measurement.measure import Batch, Generator, batches, digest
from sweep.measurement.protocol import Protocol
from sweep.measurement.quality_pass import CHANGED_NOTHING, quality_baseline, quality_pass
from sweep.measurement.speed_model import features
from sweep.measurement.speed_pass import (
    CHECKED_SOURCE,
    MEASURED_SOURCES,
    FirstEstimate,
    checked_first_estimate,
    checked_timing_set_pass,
    paired_first_estimate,
    precise_group,
    speed_baseline,
    timing_set_pass,
)
from sweep.pipelines.loader import denoiser_calls
from sweep.scoring.base import Scorer

if TYPE_CHECKING:
    from PIL.Image import Image
    from sqlalchemy import Update

log = logging.getLogger(__name__)

Rows = list[Base]


def weights_of(base: BaseConfig) -> str:
    return "random" if base.weights == "random" else base.model


@functools.lru_cache(maxsize=4096)
def packages_of_key(setting_key: str) -> str:
    """The packages key a setting (given by its key) is measured with in this process's installation."""
    return setting_packages_key(AccelSetting.from_key(setting_key))


class ScopeRun:
    """The two passes over one scope. ``load`` builds the generator and ``scorer`` the scorer, each only when
    something must be measured."""

    def __init__(
        self, repo: Repository, scope: Scope, base: BaseConfig, protocol: Protocol, *, measure_quality: bool,
        worker: str, load: Callable[[], Generator], scorer: Callable[[], Scorer], share: bool = False,
    ) -> None:
        self.repo = repo
        self.scope = scope
        self.base = base
        self.protocol = protocol
        self.measure_quality = measure_quality
        self.worker = worker
        self._load = load
        self._scorer = scorer
        self.share = share
        """Take a setting's first estimate from a row of another scheduler with the same denoiser calls, where one
        was measured (its contenders are then timed precisely here)."""
        self.baseline_images: list[Image] | None = None
        """The quality baseline's images, when this process generated them (for the image deviation)."""
        self.reference_here = False
        """The speed baseline was timed by this process (a checked pass compares with it)."""
        self.drifting = False
        """A check of this row drifted past ``DRIFT_TOLERANCE``: paired passes for the rest of the row."""
        self.refresh()

    def generator(self) -> Generator:
        """The loaded pipeline's generator (loaded now, if it is not yet)."""
        return self._load()

    # -- state --------------------------------------------------------------------------------------------

    def refresh(self) -> None:
        m = self.repo.measurements
        self.speed_base = m.speed_baseline(self.scope)
        self.quality_base = m.quality_baseline(self.scope) if self.measure_quality else None
        self.speeds = m.speeds(self.scope, weights_of(self.base), packages_of_key)
        self.qualities = m.qualities(self.scope) if self.measure_quality else {}

    @property
    def quality_work(self) -> list[Batch]:
        q = self.protocol.quality
        return batches(q.prompts, q.seeds, self.base.batch_size)

    @property
    def timing_set(self) -> list[Batch]:
        return batches(self.protocol.timing_prompts, self.protocol.timing_seeds, self.base.batch_size)

    def baselines_stored(self) -> bool:
        return self.speed_base is not None and (not self.measure_quality or self.quality_base is not None)

    def _quality_missing(self, setting: AccelSetting, max_loss: float) -> bool:
        if not self.measure_quality:
            return False
        stored = self.qualities.get(setting.key)
        # a rejection against a stricter threshold says nothing about a looser one: measure it fully then
        return stored is None or (stored.status == "rejected" and (stored.rejected_at or 0.0) < max_loss)

    def stored(self, setting: AccelSetting, max_loss: float) -> bool:
        return setting.key in self.speeds and not self._quality_missing(setting, max_loss)

    def quality_of(self, setting: AccelSetting) -> QualityResult | None:
        return self.qualities.get(setting.key)

    # -- baselines ----------------------------------------------------------------------------------------

    def baseline_rows(self) -> Rows:
        """Measure whichever baselines are missing: the quality baseline (its timed batches then serve as the
        speed baseline) and the speed baseline (from the timing set, if not from a quality pass here)."""
        rows: Rows = []
        m = self.repo.measurements
        if self.baselines_stored():
            return rows
        gen = self._load()
        if self.measure_quality and self.quality_base is None:
            run = quality_baseline(gen, self.quality_work, self._scorer())
            self.baseline_images = run.images
            rows.append(m.quality_baseline_row(self.scope, scores=run.scores, image_digests=run.digests,
                                               worker=self.worker, repeat_max_pixel_diff=run.repeat_max_pixel_diff))
            if self.speed_base is None:
                rows.append(m.speed_baseline_row(
                    self.scope, time=sum(run.seconds_per_image) / len(run.seconds_per_image),
                    time_spread=_stdev(run.seconds_per_image), batch_seconds=run.seconds_per_image,
                    source="quality pass", image_digests=run.digests[: self.protocol.timing.images],
                    weights=weights_of(self.base), worker=self.worker, warmup_runs=1,
                    repeat_max_pixel_diff=run.repeat_max_pixel_diff, host=run.host))
        elif self.speed_base is None:
            timed = speed_baseline(gen, self.timing_set, self.protocol.timing.policy)
            self.reference_here = True
            rows.append(m.speed_baseline_row(
                self.scope, time=timed.time, time_spread=timed.spread, batch_seconds=timed.seconds_per_image,
                source="timing set", image_digests=timed.digests, weights=weights_of(self.base), worker=self.worker,
                warmup_runs=timed.warmup_runs, repeat_max_pixel_diff=timed.repeat_max_pixel_diff, host=timed.host))
        return rows

    # -- one setting ----------------------------------------------------------------------------------------

    def setting_rows(self, setting: AccelSetting, max_loss: float, *, catch_errors: bool = True) -> tuple[Rows, list[object]]:
        """Measure what is missing of ``setting``: its quality pass and its first speed estimate.

        Returns (rows to insert, statements to run first). With ``catch_errors`` false a library error
        propagates (a queue retries it); an AcceleratorError is always stored as the setting's failure.
        """
        assert self.speed_base is not None, "baselines first"
        started = datetime.now(timezone.utc)
        need_quality = self._quality_missing(setting, max_loss)
        need_speed = setting.key not in self.speeds
        rows: Rows = []
        statements: list[object] = []
        if need_quality and setting.key in self.qualities:
            statements.append(self.repo.measurements.replace_quality_statement(self.scope, setting.key))
        try:
            rows = self._measure(setting, max_loss, need_quality, need_speed, started)
        except AcceleratorError as exc:
            rows = self._failed(setting, str(exc), need_quality, need_speed, started)
        except Exception as exc:  # a library failing on one setting must not end the sweep
            if not catch_errors:
                raise
            log.warning("%s / %s failed", self.base.label, describe(setting), exc_info=True)
            rows = self._failed(setting, f"{type(exc).__name__}: {exc}", need_quality, need_speed, started)
        return rows, statements

    def shared_estimate(self, setting: AccelSetting) -> FirstEstimate | None:
        """``setting``'s first estimate measured in a row that differs from this one in the scheduler alone and
        makes the same denoiser calls (its timesteps), where the method's work follows its schedule (a speed model
        can count it): the same speed-up but for the schedulers' own per-step work, which ``SHARED_MARGIN`` adds
        to its interval. None where sharing is off or no such row measured it."""
        base = self.base
        if not self.share or setting.is_baseline or features(base.scheduler, base.steps, setting) is None:
            return None
        calls = denoiser_calls(base.pipeline, base.scheduler, base.steps)
        for scheduler, speed in self.repo.measurements.sibling_estimates(
                self.scope, setting.key, packages_of_key(setting.key), MEASURED_SOURCES):
            if denoiser_calls(base.pipeline, scheduler, base.steps) != calls:
                continue
            assert self.speed_base is not None and speed.first_speedup
            # a checked estimate's drift tolerance is in its own interval only: shared, it keeps that interval
            # (no pairs to pool, which would drop the tolerance)
            spread = (None, None) if speed.first_source == CHECKED_SOURCE else (speed.first_pairs, speed.first_log_sd)
            return FirstEstimate(speed.first_speedup, (speed.first_ci_half_width or 0.0) + defaults.SHARED_MARGIN,
                                 self.speed_base.time / speed.first_speedup, self.speed_base.time,
                                 SHARED_SOURCE + scheduler, *spread)
        return None

    def _measure(self, setting: AccelSetting, max_loss: float, need_quality: bool, need_speed: bool, started: datetime) -> Rows:
        m = self.repo.measurements
        shared = self.shared_estimate(setting) if need_speed else None
        if shared is not None and not need_quality:  # nothing to generate: the pipeline is not even loaded
            return [self._speed_row(setting, shared, None, started)]
        gen = self._load()
        applied = AppliedSetting(gen.pipe, setting)
        rows: Rows = []
        failed_reason: str | None = None
        if need_quality:
            assert self.quality_base is not None and self.quality_base.scores is not None
            run = quality_pass(gen, self.quality_work, applied, self.quality_base.scores, self.quality_base.image_digests,
                               self._scorer(), max_loss, baseline_images=self.baseline_images)
            est = run.estimate
            rows.append(m.quality_trial_row(
                self.scope, settings=setting.as_dict(), setting_key=setting.key, status=run.status, reason=run.reason,
                rejected_at=run.rejected_at, scores=run.scores or None, prompts_used=run.prompts_used,
                clip_score=sum(run.scores) / len(run.scores) if run.scores else None,
                score_loss=est.loss if est and run.status != "failed" else None,
                loss_low=est.low if est and run.status != "failed" else None,
                loss_high=est.high if est and run.status != "failed" else None,
                image_deviation=run.image_deviation, worker=self.worker, started_at=started))
            if run.reason == CHANGED_NOTHING:
                failed_reason = run.reason
            elif run.status == "rejected":
                # beyond the threshold with confidence: its speed cannot make it the bound, so none is spent on it
                # (a looser threshold later measures its quality in full, and its speed then)
                need_speed = False
        if need_speed:
            if failed_reason is not None:
                rows.append(self._speed_failed(setting, failed_reason, started))
            elif shared is not None:
                rows.append(self._speed_row(setting, shared, applied.patched, started))
            elif self._checkable() and (checked := self._checked(gen, setting, applied, need_quality, started)) is not None:
                rows.append(checked)
            else:
                # the quality pass's own seconds are not compared with a baseline timed minutes (or machines) away:
                # the first estimate is a paired pass of the timing set, its baseline runs next to the setting's
                paired = timing_set_pass(gen, self.timing_set, applied, warm=need_quality)
                if [digest(i) for i in paired.images] == [digest(i) for i in paired.baseline_images]:
                    rows.append(self._speed_failed(setting, CHANGED_NOTHING, started))
                else:
                    rows.append(self._speed_row(setting, paired_first_estimate(paired), applied.patched, started,
                                                paired.host))
        return rows

    def _checkable(self) -> bool:
        """A checked first estimate needs a reference for every timing batch, timed in this process (a stored one
        is from another session, machine state or worker): the speed baseline of the timing set itself, not a
        quality pass's batches; several batches (with one, the check is the whole baseline: a paired pass costs the
        same); and a row whose checks have not drifted yet."""
        base = self.speed_base
        return (self.reference_here and not self.drifting and base is not None
                and base.source == "timing set" and len(self.timing_set) >= 2
                and len(base.batch_seconds) == len(self.timing_set))

    def _checked(self, gen: Generator, setting: AccelSetting, applied: AppliedSetting, warm: bool,
                 started: datetime) -> Base | None:
        """``setting``'s checked first estimate (or its CHANGED_NOTHING failure); None where the check drifted: the
        row is then drifting, and this setting and the rest of the row get paired passes."""
        base = self.speed_base
        assert base is not None
        check = zlib.crc32(setting.key.encode()) % len(self.timing_set)
        run = checked_timing_set_pass(gen, self.timing_set, applied, base.batch_seconds, check, warm=warm)
        if not run.passed:
            log.info("%s: the baseline drifted %+.1f%% from its speed baseline: paired first estimates from here",
                     self.base.label, 100 * (run.drift - 1))
            self.drifting = True
            return None
        if base.repeat_max_pixel_diff == 0 and len(base.image_digests) == len(run.images):
            same = [digest(i) for i in run.images] == list(base.image_digests)  # deterministic: every image
        else:
            size = self.base.batch_size
            same = [digest(i) for i in run.images[check * size:(check + 1) * size]] == \
                [digest(i) for i in run.check_images]
        if same:
            return self._speed_failed(setting, CHANGED_NOTHING, started)
        return self._speed_row(setting, checked_first_estimate(run), applied.patched, started, run.host)

    def weights_key(self, setting: AccelSetting, status: str = "done") -> str:
        """A measured speed holds for any weights unless the method looks at the activations; a failure is kept
        with the weights it happened with."""
        return weights_of(self.base) if status != "done" or speed_depends_on_weights(setting) else ""

    def _speed_row(self, setting: AccelSetting, estimate: FirstEstimate, patched: int | None, started: datetime,
                   host: dict[str, object] | None = None) -> Base:
        return self.repo.measurements.speed_trial_row(
            self.scope, settings=setting.as_dict(), setting_key=setting.key, status="done", weights=weights_of(self.base),
            weights_key=self.weights_key(setting), packages_key=packages_of_key(setting.key),
            first_speedup=estimate.speedup, first_ci_half_width=estimate.ci_half_width,
            first_source=estimate.source, first_time=estimate.time, first_pairs=estimate.pairs,
            first_log_sd=estimate.log_sd,
            first_baseline_time=estimate.baseline_time, patched_modules=patched, first_host=host,
            worker=self.worker, started_at=started)

    def _speed_failed(self, setting: AccelSetting, reason: str, started: datetime) -> Base:
        return self.repo.measurements.speed_trial_row(
            self.scope, settings=setting.as_dict(), setting_key=setting.key, status="failed", reason=reason,
            weights=weights_of(self.base), weights_key=self.weights_key(setting, "failed"), worker=self.worker,
            packages_key=packages_of_key(setting.key),
            started_at=started)

    def _failed(self, setting: AccelSetting, reason: str, need_quality: bool, need_speed: bool, started: datetime) -> Rows:
        rows: Rows = []
        if need_quality:
            rows.append(self.repo.measurements.quality_trial_row(
                self.scope, settings=setting.as_dict(), setting_key=setting.key, status="failed", reason=reason,
                worker=self.worker, started_at=started))
        if need_speed:
            rows.append(self._speed_failed(setting, reason, started))
        return rows

    # -- precise timing -------------------------------------------------------------------------------------

    def quality_views(self) -> list[dict[str, QualityResult] | None]:
        """The qualities the bound will be joined with: this run's own, else every source of the same speed
        configuration in the database, else none (a speed map: the fastest setting is the one that matters)."""
        if self.measure_quality:
            return [self.qualities]
        m = self.repo.measurements
        sources = m.quality_sources(self.scope.speed_config_id)
        return [m.qualities_of(b, q) for b, q in sources] or [None]

    def precise_todo(self, max_loss: float, exclude: set[str] = frozenset(), *, every: bool = False) -> list[str]:  # type: ignore[assignment]
        """Settings that can still be the upper bound and have only a first estimate, fastest first (with
        ``every``: every measured setting, for benchmarks that compare precise timings)."""
        keys: dict[str, float] = {}
        if every:
            return [k for k, s in sorted(self.speeds.items(), key=lambda kv: -(kv[1].published or 0.0))
                    if s.usable and not s.precise and k not in exclude]
        for quality in self.quality_views():
            ranked = contenders(self.speeds, quality, max_loss)
            for s in ranked:
                # a timing settled below an earlier leader is not precise: where it leads now (that leader is out
                # at this threshold), it is timed again, to the protocol's width
                owed = not s.precise or (s.settled_below and s is ranked[0])
                if owed and s.setting_key not in exclude:
                    keys[s.setting_key] = s.published or 0.0
        return sorted(keys, key=lambda k: -keys[k])

    def precise_bar(self, max_loss: float) -> float | None:
        """The lower end of the best precise speed-up's interval among the contenders: a contender whose own
        interval falls under it is settled without timing it to the full precision."""
        ends = [s.published * (1 - s.published_half_width) for quality in self.quality_views()  # type: ignore[operator]
                for s in contenders(self.speeds, quality, max_loss) if s.precise and not s.settled_below]
        return max(ends, default=None)

    def owed(self, setting_key: str) -> bool:
        """Settled below a leader before: where :meth:`precise_todo` names it again (it leads at a threshold where that
        leader is out), it is owed a timing to the protocol's width, with no bar (against the same bar it would settle
        again, and again)."""
        held = self.speeds.get(setting_key)
        return held is not None and held.settled_below

    def precise_below(self, setting_key: str, max_loss: float) -> float | None:
        """The bar ``setting_key``'s precise timing is settled against: :meth:`precise_bar`, or none where it is
        :meth:`owed`."""
        return None if self.owed(setting_key) else self.precise_bar(max_loss)

    def precise_statements(self, setting_keys: Sequence[str], below: float | None = None, *,
                           settle: bool = True) -> list[Update]:
        """The settings of ``setting_keys`` timed precisely together against one baseline run per round (see
        :func:`sweep.measurement.stats.measure_group`; ``settle``: a setting whose interval falls under another's
        stops there, stored as below the leader)."""
        gen = self._load()
        settings = [AccelSetting.from_key(k) for k in setting_keys]
        runs = precise_group(gen, self.timing_set, [AppliedSetting(gen.pipe, s) for s in settings],
                             self.protocol.timing.policy, below, settle=settle)
        return [self.repo.measurements.precise_statement(
            self.scope, setting.key, speedup=run.paired.speedup, ci_half_width=run.paired.half_width,
            pairs=run.paired.pairs, time=run.seconds_per_image, baseline_time=run.baseline_seconds_per_image,
            time_spread=run.spread, warmup_runs=run.warmup_runs, precise_stop=run.stop, host=run.host,
            weights_key=self.weights_key(setting), packages_key=packages_of_key(setting.key))
            for setting, run in zip(settings, runs, strict=True)]

    def precise_statement(self, setting_key: str, below: float | None = None) -> Update:
        """``setting_key`` timed precisely alone (a group of one: :meth:`precise_statements`)."""
        return self.precise_statements([setting_key], below)[0]


def _stdev(values: tuple[float, ...]) -> float:
    import statistics

    return statistics.stdev(values) if len(values) > 1 else 0.0
