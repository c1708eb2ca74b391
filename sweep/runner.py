"""The sweep runner: for every base configuration, measure the baseline and each setting not yet stored.

Each baseline and trial is written in its own transaction as soon as it is measured, so a killed run loses
at most the measurement in progress, and a re-run measures only what is missing.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol as TypingProtocol

import sweep._compat  # noqa: F401  (before diffusers)
from search_space.setting import AccelSetting
from search_space.spec import Entry, Space
from storage.repository import BaselineRecord, Repository, Scope, TrialRecord
from sweep.accelerators import ACCELERATORS, AppliedAccelerator
from sweep.environment import Environment
from sweep.errors import AcceleratorError
from sweep.measure import Generator, measure_against_baseline, measure_baseline
from sweep.pipelines.loader import load_pipeline
from sweep.protocol import Protocol
from sweep.scoring.clip_score import ClipScorer
from sweep.strategies import STRATEGIES, Evaluations, Frontier, Grid, OptunaSearch, Outcome, Problem, SearchResult, Strategy

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

log = logging.getLogger(__name__)


class ProgressSink(TypingProtocol):
    def start(self, total: int) -> None: ...
    def retotal(self, total: int) -> None: ...
    def describe(self, text: str) -> None: ...
    def advance(self) -> None: ...


class _NoProgress:
    def start(self, total: int) -> None:
        pass

    def retotal(self, total: int) -> None:
        pass

    def describe(self, text: str) -> None:
        pass

    def advance(self) -> None:
        pass


@dataclass
class RunSummary:
    new: int = 0
    """Baselines and trials measured and stored by this run."""
    stored: int = 0
    """Baselines and trials of the space that were already stored."""
    failed: int = 0
    """Of the new trials, how many failed (their reason is stored)."""
    wall_seconds: float = 0.0
    generation_seconds: float = 0.0
    """Summed timed generation (warm-up, baseline and accelerated runs): wall / generation is the overhead."""
    confirmed: int = 0
    """Upper-bound candidates re-measured in a fresh paired run."""
    base_keys: list[str] = field(default_factory=list)
    searches: list[tuple[str, SearchResult]] = field(default_factory=list)
    """(base configuration label, how its search went), for each base configuration searched."""
    budget_stop: str | None = None
    """Set when a trial or time budget ended the run before every base configuration was searched."""


@dataclass(frozen=True)
class SearchOptions:
    """How to choose which settings to measure: the strategy, its threshold and its budgets."""

    strategy: str = "grid"
    max_loss: float = 0.02
    max_trials: int | None = None
    """Per base configuration: distinct settings the strategy may evaluate (stored ones included)."""
    time_budget: float | None = None
    """Seconds for the whole run; no new measurement starts after it (stored ones are still read)."""
    seed: int = 0
    patience: int = 15
    """optuna: stop after this many new trials without a better feasible setting."""


@dataclass
class _Work:
    entry: Entry
    scope: Scope
    baseline: BaselineRecord | None
    missing: list[AccelSetting]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Runner:
    def __init__(self, repo: Repository, device: str, progress: ProgressSink | None = None) -> None:
        self.repo = repo
        self.device = device
        self.progress = progress or _NoProgress()
        self.worker = worker_name()
        self._scorers: dict[str, ClipScorer] = {}
        self._optuna_storage: object = None

    def _scorer_for(self, protocol: Protocol) -> ClipScorer:
        if protocol.scorer not in self._scorers:
            self._scorers[protocol.scorer] = ClipScorer(protocol.scorer_model, protocol.scorer_pretrained, self.device)
        return self._scorers[protocol.scorer]

    def baseline_fields(self, gen: Generator, protocol: Protocol) -> dict[str, object]:
        """Measure the baseline (warm-up, one timed pass, CLIP score): the fields of its row."""
        run = measure_baseline(gen, protocol.timing)
        scores = self._scorer_for(protocol).score(run.images, list(protocol.prompts))
        return dict(
            time=run.seconds_per_image, time_spread=run.spread, clip_score=sum(scores) / len(scores),
            image_digests=run.digests, worker=self.worker, warmup_runs=run.warmup_runs,
            repeat_max_pixel_diff=run.repeat_max_pixel_diff,
        )

    def measure_trial(
        self, gen: Generator, baseline: BaselineRecord, setting: AccelSetting, protocol: Protocol, *, catch_errors: bool = True,
    ) -> TrialRecord:
        """One paired trial. With ``catch_errors`` false, a library error propagates (a queue retries it)."""
        return self._trial(gen, baseline, setting, protocol, self._scorer_for(protocol), catch_errors=catch_errors)

    def plan(self, space: Space, protocol: Protocol, environment: Environment) -> tuple[list[_Work], int]:
        env_id = self.repo.ensure_environment(environment.key, environment.device, environment.libraries)
        protocol_id = self.repo.ensure_protocol(
            protocol.key, prompt_source=protocol.prompt_source, prompts=list(protocol.prompts),
            prompts_sha256=protocol.prompts_sha256, seed=protocol.seed, timing=dataclasses.asdict(protocol.timing),
            scorer=protocol.scorer, scorer_random=protocol.scorer_random,
        )
        work: list[_Work] = []
        stored = 0
        for entry in space.entries:
            scope = Scope(self.repo.ensure_base_config(entry.base), env_id, protocol_id)
            keys = self.repo.stored_setting_keys(scope)
            baseline = self.repo.baseline(scope)
            missing = [s for s in entry.settings if not s.is_baseline and s.key not in keys]
            stored += sum(1 for s in entry.settings if s.key in keys) + (baseline is not None)
            work.append(_Work(entry, scope, baseline, missing))
        return work, stored

    def run(
        self, space: Space, *, confirm_for: float | None = None, confirm_top: int = 3, search: SearchOptions | None = None,
    ) -> RunSummary:
        """Search every base configuration (by default: measure every setting not stored); then, with
        ``confirm_for`` (a max loss), confirm each upper bound."""
        search = search or SearchOptions(max_loss=confirm_for if confirm_for is not None else 0.02)
        if search.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {search.strategy!r}; valid: {', '.join(STRATEGIES)}")
        started = time.perf_counter()
        deadline = time.monotonic() + search.time_budget if search.time_budget is not None else None
        protocol = Protocol.resolve(space.protocol)
        environment = Environment.detect(self.device)
        work, stored = self.plan(space, protocol, environment)
        summary = RunSummary(stored=stored, base_keys=[w.entry.base.key for w in work])
        estimates = [self._estimate(w, search) for w in work]
        self.progress.start(sum(estimates))
        for index, item in enumerate(work):
            if deadline is not None and time.monotonic() >= deadline and (item.missing or item.baseline is None):
                summary.budget_stop = f"time budget reached before {len(work) - index} base configuration(s)"
                break
            done_before = summary.new
            self._search(item, protocol, summary, search, deadline)
            # the bar counted this item's estimate; a search that stopped early hands the rest back
            estimates[index] = summary.new - done_before
            self.progress.retotal(sum(estimates))
        if confirm_for is not None:
            if summary.budget_stop is not None or (deadline is not None and time.monotonic() >= deadline):
                summary.budget_stop = (summary.budget_stop or "time budget reached") + ": upper bounds not confirmed"
            else:
                for item in work:
                    self._confirm(item, protocol, summary, confirm_for, confirm_top)
        summary.wall_seconds = time.perf_counter() - started
        return summary

    @staticmethod
    def _estimate(item: _Work, search: SearchOptions) -> int:
        """Upper estimate of the measurements this item needs (the progress bar's share)."""
        missing = len(item.missing)
        if search.max_trials is not None:
            missing = min(missing, search.max_trials)
        return missing + (item.baseline is None)

    def _strategy(self, item: _Work, search: SearchOptions) -> tuple[Strategy, str | None]:
        if search.strategy == "grid":
            return Grid(), None
        if search.strategy == "frontier":
            return Frontier(), None
        import optuna

        scope = item.scope
        name = (f"sweep:{item.entry.base.label}:bc{scope.base_config_id}-env{scope.environment_id}"
                f"-proto{scope.protocol_id}:loss={search.max_loss:g}")
        if self._optuna_storage is None:
            self._optuna_storage = optuna.storages.RDBStorage(self.repo.url)
        return OptunaSearch(storage=self._optuna_storage, study_name=name, patience=search.patience), name

    def _search(
        self, item: _Work, protocol: Protocol, summary: RunSummary, search: SearchOptions, deadline: float | None,
    ) -> None:
        """Run the strategy over one base configuration; its pipeline is loaded only if something must be measured."""
        base = item.entry.base
        outcomes = self.repo.stored_outcomes(item.scope)
        problem = Problem(base.label, tuple(s for s in item.entry.settings if not s.is_baseline), search.max_loss, search.seed)
        loaded: list[Generator] = []

        def generator() -> Generator:
            if not loaded:
                self.progress.describe(f"{base.label}: loading")
                loaded.append(Generator(load_pipeline(base, self.device), base, protocol, self.device))
            return loaded[0]

        def ensure_baseline() -> BaselineRecord:
            if item.baseline is None:
                gen = generator()
                self.progress.describe(f"{base.label}: baseline")
                item.baseline = self.repo.save_baseline(item.scope, **self.baseline_fields(gen, protocol))
                summary.new += 1
                self.progress.advance()
            return item.baseline

        def evaluate(setting: AccelSetting) -> Outcome:
            if setting.key in outcomes:
                status, speedup, loss = outcomes[setting.key]
                return Outcome(setting, status, speedup, loss, stored=True)
            baseline = ensure_baseline()
            gen = generator()
            self.progress.describe(f"{base.label}: {setting.describe()}")
            trial = self.measure_trial(gen, baseline, setting, protocol)
            if self.repo.save_trial(item.scope, trial):
                summary.new += 1
                summary.failed += trial.status == "failed"
                outcome = Outcome(setting, trial.status, trial.speedup, trial.score_loss)
            else:  # stored by another worker meanwhile: theirs is the measurement
                status, speedup, loss = self.repo.stored_outcomes(item.scope)[setting.key]
                outcome = Outcome(setting, status, speedup, loss, stored=True)
            outcomes[setting.key] = (outcome.status, outcome.speedup, outcome.score_loss)
            self.progress.advance()
            return outcome

        strategy, study_name = self._strategy(item, search)
        evals = Evaluations(
            problem, evaluate, max_trials=search.max_trials, deadline=deadline, is_stored=lambda s: s.key in outcomes,
        )
        try:
            if item.baseline is None and (deadline is None or time.monotonic() < deadline):
                ensure_baseline()
            result = strategy.search(evals)
        finally:
            if loaded:
                summary.generation_seconds += loaded.pop().generation_seconds
                free_memory()
        if problem.settings:
            self.repo.save_search(
                item.scope, strategy=result.strategy, max_loss=search.max_loss, seed=search.seed,
                evaluated=result.evaluated, space_size=len(problem.settings), stop=result.stop,
                best_setting_key=result.best.setting.key if result.best else None, study_name=study_name,
                log=list(result.log),
            )
            summary.searches.append((base.label, result))
        if result.stop == "time budget reached":
            summary.budget_stop = "time budget reached"

    def _with_pipeline(self, item: _Work, protocol: Protocol, summary: RunSummary, body: Callable[[Generator], None]) -> None:
        base = item.entry.base
        self.progress.describe(f"{base.label}: loading")
        gen = Generator(load_pipeline(base, self.device), base, protocol, self.device)
        try:
            body(gen)
        finally:
            summary.generation_seconds += gen.generation_seconds
            del gen
            free_memory()

    def _confirm(self, item: _Work, protocol: Protocol, summary: RunSummary, max_loss: float, top: int) -> None:
        """Re-measure the fastest candidates until the published upper bound is a confirmed measurement.

        The maximum of many noisy speed-ups is biased upward; a fresh paired run of the leaders removes
        that selection bias from the value that is published.
        """
        candidates = self.repo.candidates(item.scope, max_loss)
        if not candidates or candidates[0].confirmed_speedup is not None:
            return

        def body(gen: Generator) -> None:
            for _ in range(len(candidates)):  # each round confirms at least one more candidate
                ranked = self.repo.candidates(item.scope, max_loss)
                if ranked[0].confirmed_speedup is not None:
                    return
                for candidate in [c for c in ranked if c.confirmed_speedup is None][:top]:
                    self.progress.describe(f"{item.entry.base.label}: confirming {candidate.setting.describe()}")
                    applied: list[AppliedAccelerator] = []
                    run = measure_against_baseline(
                        gen, lambda: self._apply(gen.pipe, candidate.setting, applied), lambda: _remove(applied),
                        protocol.timing,
                    )
                    self.repo.save_confirmation(
                        candidate.trial_id, speedup=run.paired.speedup, ci_half_width=run.paired.half_width,
                        repeats=run.paired.pairs,
                    )
                    summary.confirmed += 1

        self._with_pipeline(item, protocol, summary, body)

    @staticmethod
    def _apply(pipe: DiffusionPipeline, setting: AccelSetting, applied: list[AppliedAccelerator]) -> None:
        if not applied:
            for name, params in setting:
                applied.append(ACCELERATORS[name]().apply(pipe, params))

    def _trial(
        self, gen: Generator, baseline: BaselineRecord, setting: AccelSetting, protocol: Protocol, scorer: ClipScorer,
        *, catch_errors: bool = True,
    ) -> TrialRecord:
        started_at = datetime.now(timezone.utc)

        def failed(reason: str) -> TrialRecord:
            return TrialRecord(setting, "failed", self.worker, started_at, reason=reason, baseline_id=baseline.id)

        applied: list[AppliedAccelerator] = []
        patched = 0

        def accelerate() -> None:
            nonlocal patched
            self._apply(gen.pipe, setting, applied)
            patched = sum(h.patched for h in applied)

        try:
            run = measure_against_baseline(gen, accelerate, lambda: _remove(applied), protocol.timing)
        except AcceleratorError as exc:
            return failed(str(exc))
        except Exception as exc:  # a library failing on one setting must not end the sweep
            if not catch_errors:
                raise
            log.warning("%s / %s failed", gen.base.label, setting.describe(), exc_info=True)
            return failed(f"{type(exc).__name__}: {exc}")
        if run.digests == list(baseline.image_digests):
            return failed("changed nothing: every image is identical to the baseline's")
        scores = scorer.score(run.images, list(protocol.prompts))
        clip = sum(scores) / len(scores)
        loss = (baseline.clip_score - clip) / baseline.clip_score if baseline.clip_score > 0 else None
        paired = run.paired
        return TrialRecord(
            setting, "done", self.worker, started_at, baseline_id=baseline.id,
            reason=None if loss is not None else "baseline CLIP score is 0: score loss undefined",
            time=run.seconds_per_image, time_spread=statistics.stdev(paired.accelerated_seconds) if paired.pairs > 1 else 0.0,
            paired_baseline_time=run.baseline_seconds_per_image, speedup=paired.speedup,
            ci_half_width=paired.half_width, repeats=paired.pairs, warmup_runs=run.warmup_runs,
            clip_score=clip, score_loss=loss, image_deviation=run.image_deviation, n_images=len(run.images),
            patched_modules=patched,
        )


def _remove(applied: list[AppliedAccelerator]) -> None:
    while applied:
        applied.pop().remove()


def free_memory() -> None:
    """Collect garbage and hand cached CUDA memory back; call once the last reference to a pipeline is gone."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
