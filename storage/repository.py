"""Repository: every read and write of sweep's tables, in short transactions.

The only module that opens sessions. Inserts rely on the unique constraints: a key written by another
process first is read back instead of written twice.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from search_space.base_config import BaseConfig
from search_space.setting import AccelSetting
from storage.engine import open_engine
from storage.models import (
    Base,
    BaseConfigRow,
    BaselineRow,
    EnvironmentRow,
    ProtocolRow,
    SearchRow,
    TargetRow,
    TaskRow,
    TrialRow,
)
from sweep.errors import StorageError


@dataclass(frozen=True)
class Scope:
    """Row ids of the (base config, environment, protocol) that a baseline and its trials belong to."""

    base_config_id: int
    environment_id: int
    protocol_id: int


@dataclass(frozen=True)
class BaselineRecord:
    id: int
    time: float
    time_spread: float
    clip_score: float
    image_digests: tuple[str, ...]
    n_images: int


@dataclass(frozen=True)
class TrialRecord:
    setting: AccelSetting
    status: str
    worker: str
    started_at: datetime
    reason: str | None = None
    baseline_id: int | None = None
    time: float | None = None
    time_spread: float | None = None
    paired_baseline_time: float | None = None
    speedup: float | None = None
    ci_half_width: float | None = None
    repeats: int | None = None
    warmup_runs: int | None = None
    clip_score: float | None = None
    score_loss: float | None = None
    image_deviation: float | None = None
    n_images: int | None = None
    patched_modules: int | None = None


@dataclass(frozen=True)
class Candidate:
    """A done trial within the loss threshold, as ranked for confirmation."""

    trial_id: int
    setting: AccelSetting
    speedup: float
    confirmed_speedup: float | None


@dataclass(frozen=True)
class UpperBound:
    """The largest speed-up of one base configuration whose score loss is at most ``max_loss``."""

    base: BaseConfig
    device: str
    protocol_id: int
    scorer: str
    quality_meaningful: bool
    max_loss: float
    speedup: float
    """The published value: the confirmed re-measurement where one exists, else the first measurement."""
    first_speedup: float
    confirmed: bool
    ci_half_width: float | None
    score_loss: float
    time: float
    baseline_time: float
    settings: dict[str, dict[str, object]]
    trials: int
    repeat_max_pixel_diff: int | None = None
    """How far two generations of the same baseline batch differed (0: bit-identical; None: not checked)."""
    scope: Scope | None = None
    trial_id: int | None = None

    @property
    def deterministic(self) -> bool | None:
        return None if self.repeat_max_pixel_diff is None else self.repeat_max_pixel_diff == 0

    def as_row(self) -> dict[str, object]:
        return {
            "pipeline": self.base.pipeline,
            "scheduler": self.base.scheduler,
            "steps": self.base.steps,
            "height": self.base.height,
            "width": self.base.width,
            "dtype": self.base.dtype,
            "batch_size": self.base.batch_size,
            "model": self.base.model,
            "weights": self.base.weights,
            "device": self.device,
            "scorer": self.scorer,
            "quality_meaningful": self.quality_meaningful,
            "max_loss": self.max_loss,
            "speedup": self.speedup,
            "first_speedup": self.first_speedup,
            "confirmed": self.confirmed,
            "ci_half_width": self.ci_half_width,
            "score_loss": self.score_loss,
            "time": self.time,
            "baseline_time": self.baseline_time,
            "settings": self.settings,
            "trials": self.trials,
            "deterministic": self.deterministic,
            "repeat_max_pixel_diff": self.repeat_max_pixel_diff,
        }


def published_speedup(trial: TrialRow) -> float:
    """The confirmed re-measurement where one exists, else the first measurement."""
    return trial.confirmed_speedup if trial.confirmed_speedup is not None else trial.speedup  # type: ignore[return-value]


def _base_from_row(row: BaseConfigRow) -> BaseConfig:
    return BaseConfig(
        row.pipeline, row.model, row.weights, row.scheduler, row.steps,  # type: ignore[arg-type]
        row.height, row.width, row.dtype, row.batch_size,
    )


class Repository:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = open_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._create_schema()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _create_schema(self) -> None:
        from storage.schema import ensure

        try:
            ensure(self.engine, self.url)
        except DBAPIError as exc:
            raise StorageError(f"cannot create sweep's tables in {self.url}: {exc.orig}") from None

    # -- identities -------------------------------------------------------------------------------------

    def _get_or_create(self, table: type[Base], key: str, **fields: object) -> int:
        with self.session() as s:
            found = s.scalar(select(table.id).where(table.key == key))  # type: ignore[attr-defined]
            if found is not None:
                return int(found)
        try:
            with self.session() as s:
                row = table(key=key, **fields)
                s.add(row)
                s.flush()
                return int(row.id)  # type: ignore[attr-defined]
        except IntegrityError:  # inserted by another worker in between
            with self.session() as s:
                return int(s.scalar(select(table.id).where(table.key == key)))  # type: ignore[attr-defined]

    def ensure_base_config(self, base: BaseConfig) -> int:
        return self._get_or_create(
            BaseConfigRow, base.key, pipeline=base.pipeline, model=base.model, weights=base.weights,
            scheduler=base.scheduler, steps=base.steps, height=base.height, width=base.width, dtype=base.dtype,
            batch_size=base.batch_size,
        )

    def ensure_environment(self, key: str, device: str, details: dict[str, str]) -> int:
        return self._get_or_create(EnvironmentRow, key, device=device, details=details)

    def ensure_protocol(
        self, key: str, *, prompt_source: str, prompts: list[str], prompts_sha256: str, seed: int,
        timing: dict[str, float], scorer: str, scorer_random: bool,
    ) -> int:
        return self._get_or_create(
            ProtocolRow, key, prompt_source=prompt_source, prompts=prompts, prompts_sha256=prompts_sha256,
            prompt_count=len(prompts), seed=seed, timing=timing, scorer=scorer,
            scorer_random=scorer_random,
        )

    # -- baselines and trials ---------------------------------------------------------------------------

    def _scope_filter(self, model: type[BaselineRow] | type[TrialRow] | type[SearchRow], scope: Scope) -> tuple[object, ...]:
        return (
            model.base_config_id == scope.base_config_id,
            model.environment_id == scope.environment_id,
            model.protocol_id == scope.protocol_id,
        )

    def base_config(self, base_config_id: int) -> BaseConfig:
        with self.session() as s:
            row = s.get(BaseConfigRow, base_config_id)
            assert row is not None
            return _base_from_row(row)

    def protocol_row(self, protocol_id: int) -> dict[str, object]:
        with self.session() as s:
            row = s.get(ProtocolRow, protocol_id)
            assert row is not None
            return {"key": row.key, "prompt_source": row.prompt_source, "prompts": list(row.prompts), "seed": row.seed,
                    "timing": dict(row.timing), "scorer": row.scorer}

    def baseline(self, scope: Scope) -> BaselineRecord | None:
        with self.session() as s:
            row = s.scalar(select(BaselineRow).where(*self._scope_filter(BaselineRow, scope)))
            if row is None:
                return None
            return BaselineRecord(
                row.id, row.time, row.time_spread, row.clip_score, tuple(row.image_digests), row.n_images
            )

    @staticmethod
    def baseline_row(
        scope: Scope, *, time: float, time_spread: float, clip_score: float, image_digests: list[str],
        worker: str, warmup_runs: int = 0, repeat_max_pixel_diff: int | None = None,
    ) -> BaselineRow:
        return BaselineRow(
            base_config_id=scope.base_config_id, environment_id=scope.environment_id,
            protocol_id=scope.protocol_id, time=time, time_spread=time_spread, clip_score=clip_score,
            image_digests=image_digests, n_images=len(image_digests), worker=worker, warmup_runs=warmup_runs,
            repeat_max_pixel_diff=repeat_max_pixel_diff,
        )

    def save_baseline(self, scope: Scope, **fields: object) -> BaselineRecord:
        """Store the baseline; if another worker stored it first, return theirs."""
        try:
            with self.session() as s:
                s.add(self.baseline_row(scope, **fields))  # type: ignore[arg-type]
        except IntegrityError:
            pass
        stored = self.baseline(scope)
        assert stored is not None
        return stored

    def stored_setting_keys(self, scope: Scope) -> set[str]:
        with self.session() as s:
            return set(s.scalars(select(TrialRow.setting_key).where(*self._scope_filter(TrialRow, scope))))

    @staticmethod
    def trial_row(scope: Scope, trial: TrialRecord) -> TrialRow:
        return TrialRow(
            base_config_id=scope.base_config_id, environment_id=scope.environment_id,
            protocol_id=scope.protocol_id, setting_key=trial.setting.key, settings=trial.setting.as_dict(),
            status=trial.status, reason=trial.reason, baseline_id=trial.baseline_id, time=trial.time,
            time_spread=trial.time_spread, paired_baseline_time=trial.paired_baseline_time,
            speedup=trial.speedup, ci_half_width=trial.ci_half_width, repeats=trial.repeats,
            warmup_runs=trial.warmup_runs, clip_score=trial.clip_score, score_loss=trial.score_loss,
            image_deviation=trial.image_deviation, n_images=trial.n_images, patched_modules=trial.patched_modules,
            worker=trial.worker, started_at=trial.started_at,
        )

    def save_trial(self, scope: Scope, trial: TrialRecord) -> bool:
        """Insert one trial in its own transaction; False if its key was already stored."""
        try:
            with self.session() as s:
                s.add(self.trial_row(scope, trial))
            return True
        except IntegrityError:
            return False

    def stored_outcomes(self, scope: Scope) -> dict[str, tuple[str, float | None, float | None]]:
        """setting key → (status, first-measured speed-up, score loss) of every stored trial in ``scope``."""
        with self.session() as s:
            rows = s.execute(select(TrialRow.setting_key, TrialRow.status, TrialRow.speedup, TrialRow.score_loss).where(
                *self._scope_filter(TrialRow, scope))).all()
            return {key: (status, speedup, loss) for key, status, speedup, loss in rows}

    def save_search(
        self, scope: Scope, *, strategy: str, max_loss: float, seed: int, evaluated: int, space_size: int, stop: str,
        best_setting_key: str | None, study_name: str | None, log: list[str],
    ) -> None:
        """Record (or update) how a strategy searched this scope for this threshold."""
        fields = dict(seed=seed, evaluated=evaluated, space_size=space_size, stop=stop, best_setting_key=best_setting_key,
                      study_name=study_name, log=log, updated_at=datetime.now(timezone.utc))
        where = (*self._scope_filter(SearchRow, scope), SearchRow.strategy == strategy, SearchRow.max_loss == max_loss)  # type: ignore[arg-type]
        for _ in range(2):
            try:
                with self.session() as s:
                    row = s.scalar(select(SearchRow).where(*where))
                    if row is None:
                        s.add(SearchRow(base_config_id=scope.base_config_id, environment_id=scope.environment_id,
                                        protocol_id=scope.protocol_id, strategy=strategy, max_loss=max_loss, **fields))
                    else:
                        for k, v in fields.items():
                            setattr(row, k, v)
                return
            except IntegrityError:  # another worker inserted it first: update theirs
                continue

    def searches(self) -> list[dict[str, object]]:
        with self.session() as s:
            rows = s.scalars(select(SearchRow).join(BaseConfigRow, BaseConfigRow.id == SearchRow.base_config_id)).all()
            return [{
                "base_config": _base_from_row(s.get(BaseConfigRow, r.base_config_id)).label,  # type: ignore[arg-type]
                "strategy": r.strategy, "max_loss": r.max_loss, "seed": r.seed, "evaluated": r.evaluated,
                "space_size": r.space_size, "stop": r.stop, "study_name": r.study_name, "log": r.log,
            } for r in rows]

    # -- confirmation -----------------------------------------------------------------------------------

    def candidates(self, scope: Scope, max_loss: float) -> list[Candidate]:
        """Done trials with loss ≤ max_loss, fastest first by their published value."""
        with self.session() as s:
            rows = s.scalars(select(TrialRow).where(
                *self._scope_filter(TrialRow, scope), TrialRow.status == "done", TrialRow.score_loss <= max_loss
            )).all()
            ranked = sorted(rows, key=published_speedup, reverse=True)
            return [Candidate(t.id, AccelSetting.from_key(t.setting_key), t.speedup, t.confirmed_speedup) for t in ranked]  # type: ignore[arg-type]

    def save_confirmation(self, trial_id: int, *, speedup: float, ci_half_width: float, repeats: int) -> None:
        with self.session() as s:
            trial = s.get(TrialRow, trial_id)
            assert trial is not None
            trial.confirmed_speedup = speedup
            trial.confirmed_ci_half_width = ci_half_width
            trial.confirmed_repeats = repeats
            trial.confirmed_at = datetime.now(timezone.utc)

    # -- queries ----------------------------------------------------------------------------------------

    def upper_bounds(self, max_loss: float, base_keys: Iterable[str] | None = None) -> list[UpperBound]:
        """Per (base config, environment, protocol) with a baseline: the fastest done trial with loss ≤ max_loss.

        When no trial qualifies, the baseline itself is the bound (1.0x, empty settings).
        """
        keys = None if base_keys is None else set(base_keys)
        with self.session() as s:
            baselines = s.scalars(select(BaselineRow).join(BaselineRow.base_config)).all()
            trials = s.scalars(select(TrialRow).where(TrialRow.status == "done")).all()
            by_scope: dict[tuple[int, int, int], list[TrialRow]] = defaultdict(list)
            for t in trials:
                by_scope[(t.base_config_id, t.environment_id, t.protocol_id)].append(t)
            bounds: list[UpperBound] = []
            for b in baselines:
                if keys is not None and b.base_config.key not in keys:
                    continue
                done = by_scope[(b.base_config_id, b.environment_id, b.protocol_id)]
                eligible = [t for t in done if t.score_loss is not None and t.score_loss <= max_loss]
                best = max(eligible, key=lambda t: (published_speedup(t), -(t.score_loss or 0.0)), default=None)
                base = _base_from_row(b.base_config)
                bounds.append(UpperBound(
                    base=base, device=b.environment.device, protocol_id=b.protocol_id, scorer=b.protocol.scorer,
                    quality_meaningful=base.weights == "pretrained" and not b.protocol.scorer_random,
                    max_loss=max_loss,
                    speedup=published_speedup(best) if best else 1.0,
                    first_speedup=best.speedup if best else 1.0,  # type: ignore[arg-type]
                    confirmed=best is not None and best.confirmed_speedup is not None,
                    ci_half_width=(best.confirmed_ci_half_width if best.confirmed_speedup is not None
                                   else best.ci_half_width) if best else None,
                    score_loss=best.score_loss if best else 0.0,  # type: ignore[arg-type]
                    time=best.time if best else b.time,  # type: ignore[arg-type]
                    baseline_time=b.time,
                    settings=json.loads(best.setting_key) if best else {},
                    trials=len(done),
                    repeat_max_pixel_diff=b.repeat_max_pixel_diff,
                    scope=Scope(b.base_config_id, b.environment_id, b.protocol_id), trial_id=best.id if best else None,
                ))
        bounds.sort(key=lambda u: (u.base.pipeline, u.base.scheduler, u.base.steps, u.base.key, u.device))
        return bounds

    def status(self) -> dict[str, object]:
        with self.session() as s:
            counts = Counter(dict(s.execute(select(TrialRow.status, func.count()).group_by(TrialRow.status)).all()))
            return {
                "base_configs": s.scalar(select(func.count()).select_from(BaseConfigRow)) or 0,
                "baselines": s.scalar(select(func.count()).select_from(BaselineRow)) or 0,
                "trials": {"done": counts.get("done", 0), "failed": counts.get("failed", 0),
                           **{k: v for k, v in counts.items() if k not in ("done", "failed")}},
                "tasks": dict(s.execute(select(TaskRow.status, func.count()).group_by(TaskRow.status)).all()),
            }


def _reaching(trials: Iterable[TrialRow], target: float, max_loss: float) -> TrialRow | None:
    """The trial with the least score loss among those within ``max_loss`` whose speed-up reaches ``target``."""
    ok = [t for t in trials if t.status == "done" and t.score_loss is not None and t.score_loss <= max_loss
          and published_speedup(t) >= target]
    return min(ok, key=lambda t: (t.score_loss, -published_speedup(t)), default=None)  # type: ignore[arg-type,return-value]


class TargetStore:
    """Targets for tasks and queries by target speed-up, over a Repository's tables."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    def _trials(self, s: Session, scope: Scope) -> list[TrialRow]:
        return list(s.scalars(select(TrialRow).where(*self.repo._scope_filter(TrialRow, scope))))

    def by_target(self, target: float, max_loss: float) -> list[dict[str, object]]:
        """Per base configuration: the least-loss setting reaching ``target``, or the best there is."""
        rows = []
        for bound in self.repo.upper_bounds(max_loss):
            assert bound.scope is not None
            with self.repo.session() as s:
                hit = _reaching(self._trials(s, bound.scope), target, max_loss)
                row = {**bound.as_row(), "target": target, "reachable": hit is not None}
                if hit is not None:
                    row.update(speedup=published_speedup(hit), score_loss=hit.score_loss, time=hit.time,
                               settings=json.loads(hit.setting_key), confirmed=hit.confirmed_speedup is not None)
            rows.append(row)
        return rows

    def set_targets(
        self, factors: dict[str, float], max_loss: float, *, refresh: bool = False, include_random: bool = False,
    ) -> list[dict[str, object]]:
        """Create the targets of every confirmed upper bound that has none; with ``refresh``, recompute stale ones."""
        from sweep.targets import target_for

        for bound in self.repo.upper_bounds(max_loss):
            if not bound.confirmed or (not bound.quality_meaningful and not include_random):
                continue
            assert bound.scope is not None
            with self.repo.session() as s:
                trials = self._trials(s, bound.scope)
                for difficulty, factor in factors.items():
                    row = s.scalar(select(TargetRow).where(
                        *self.repo._scope_filter(TargetRow, bound.scope), TargetRow.max_loss == max_loss,  # type: ignore[arg-type]
                        TargetRow.difficulty == difficulty))
                    if row is not None and not (refresh and row.upper_bound != bound.speedup):
                        continue
                    target = target_for(bound.speedup, factor)
                    hit = _reaching(trials, target, max_loss)
                    if row is None:
                        row = TargetRow(base_config_id=bound.scope.base_config_id, environment_id=bound.scope.environment_id,
                                        protocol_id=bound.scope.protocol_id, max_loss=max_loss, difficulty=difficulty)
                        s.add(row)
                    row.factor, row.target, row.upper_bound = factor, target, bound.speedup
                    row.trial_id, row.origin = (hit.id if hit else None), "sweep"
        return self.targets(max_loss)

    def targets(self, max_loss: float | None = None) -> list[dict[str, object]]:
        """Every stored target with the bound it came from, the current bound, and whether it is stale."""
        from sweep.targets import scheduler_name, task_sentence

        current: dict[tuple[Scope, float], UpperBound] = {}
        out = []
        with self.repo.session() as s:
            query = select(TargetRow).order_by(TargetRow.id)
            if max_loss is not None:
                query = query.where(TargetRow.max_loss == max_loss)
            for t in s.scalars(query):
                scope = Scope(t.base_config_id, t.environment_id, t.protocol_id)
                if (scope, t.max_loss) not in current:
                    for bound in self.repo.upper_bounds(t.max_loss):
                        current[(bound.scope, t.max_loss)] = bound  # type: ignore[index]
                bound = current.get((scope, t.max_loss))
                base = _base_from_row(s.get(BaseConfigRow, t.base_config_id))  # type: ignore[arg-type]
                trial = s.get(TrialRow, t.trial_id) if t.trial_id else None
                now = bound.speedup if bound else None
                out.append({
                    "task_id": f"{base.pipeline}-{scheduler_name(base.scheduler)}-{base.steps}-{t.difficulty}-e{t.environment_id}",
                    "pipeline": base.pipeline, "scheduler": base.scheduler, "steps": base.steps,
                    "difficulty": t.difficulty, "factor": t.factor, "target": t.target, "max_loss": t.max_loss,
                    "sentence": task_sentence(base.pipeline, base.scheduler, base.steps, t.target),
                    "upper_bound": t.upper_bound, "current_upper_bound": now,
                    "stale": t.upper_bound is not None and now is not None and now != t.upper_bound,
                    "settings": json.loads(trial.setting_key) if trial else None,
                    "setting_speedup": published_speedup(trial) if trial else None,
                    "setting_time": trial.time if trial else None,
                    "setting_score_loss": trial.score_loss if trial else None,
                    "quality_meaningful": bound.quality_meaningful if bound else None, "origin": t.origin,
                })
        return out
