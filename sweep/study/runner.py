"""The sweep runner: for every base configuration of a space, the quality pass and the speed pass.

1. **Baselines**: the quality baseline (prompts generated once, scored per prompt) where quality means
   something; the speed baseline in this environment.
2. **Settings**, in the order a strategy asks for them: each setting's quality pass (stopped early once it
   is over max-loss with 95% confidence) and its first speed estimate.
3. **Precise timing**: paired A/B timing of the contenders only (settings that can still be the bound),
   round after round until the published bound is a precise measurement.

Every bundle of rows is written in its own transaction as soon as it is measured, so a killed run loses at
most the measurement in progress, and a re-run measures only what is missing.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sweep._compat  # noqa: F401  (before diffusers)
from search_space import defaults
from search_space.base_config import BaseConfig
from search_space.setting import AccelSetting
from search_space.spec import Entry, Space
from storage import Repository, Scope
from storage.measurements import SpeedBaseline, real_quality
from sweep.accelerators import describe
from sweep.measurement.environment import Environment
from sweep.measurement.measure import Generator
from sweep.measurement.protocol import Protocol
from sweep.measurement.speed_pass import speed_baseline
from sweep.pipelines.loader import load_pipeline, pipeline_info, reuse_pipeline
from sweep.progress import NoProgress, ProgressSink
from sweep.scoring.base import Scorer
from sweep.scoring.clip_score import ClipScorer
from sweep.study.scope import ScopeRun
from sweep.study.strategies import (
    STRATEGIES,
    Evaluations,
    Frontier,
    Grid,
    OptunaSearch,
    Outcome,
    Problem,
    SearchResult,
    Strategy,
)

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    new: int = 0
    """Baselines and settings measured (in part or whole) by this run."""
    stored: int = 0
    """Baselines and settings of the space that were already stored."""
    failed: int = 0
    """Of the new settings, how many failed (their reason is stored)."""
    rejected: int = 0
    """Of the new settings, how many the quality pass stopped early (over max-loss with 95% confidence)."""
    precise: int = 0
    """Contenders timed precisely."""
    below_leader: int = 0
    """Of those, how many stopped once their interval fell under the leader's (not a precise speed-up)."""
    wall_seconds: float = 0.0
    generation_seconds: float = 0.0
    """Summed timed generation (warm-up included): wall / generation is the overhead."""
    images: int = 0
    """Images generated, warm-up included."""
    speed_config_ids: list[int] = field(default_factory=list)
    environment_id: int | None = None
    searches: list[tuple[str, SearchResult]] = field(default_factory=list)
    """(base configuration label, how its search went), for each base configuration searched."""
    budget_stop: str | None = None
    """Set when a trial or time budget ended the run before every base configuration was searched."""
    canary: str | None = None
    """What re-timing a stored speed baseline before adding to its environment found, in one line."""


@dataclass(frozen=True)
class SearchOptions:
    """How to choose which settings to measure: the strategy, its threshold and its budgets."""

    strategy: str = "grid"
    max_loss: float = defaults.MAX_LOSS
    max_trials: int | None = None
    """Per base configuration: distinct settings the strategy may evaluate (stored ones included)."""
    time_budget: float | None = None
    """Seconds for the whole run; no new measurement starts after it (stored ones are still read)."""
    seed: int = 0
    patience: int = defaults.PATIENCE
    """optuna: stop after this many new trials without a better feasible setting."""


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def measures_quality(entry_weights: str, protocol: Protocol, force: bool = False) -> bool:
    """Quality is measured only where it means something: pretrained weights scored by a real scorer.

    ``force`` (benchmarks only) runs the pass anyway, so that its cost can be measured with random weights.
    """
    return force or real_quality(entry_weights, protocol.quality.scorer)


@dataclass
class _Item:
    entry: Entry
    scope: Scope
    run: ScopeRun


class Runner:
    def __init__(
        self, repo: Repository, device: str, progress: ProgressSink | None = None, *, force_quality: bool = False,
    ) -> None:
        self.repo = repo
        self.device = device
        self.progress = progress or NoProgress()
        self.worker = worker_name()
        self.force_quality = force_quality
        self._scorers: dict[str, Scorer] = {}
        self._optuna_storage: object = None
        self._pipe: tuple[tuple[str, str, str, str], DiffusionPipeline] | None = None

    def scorer(self, protocol: Protocol) -> Scorer:
        q = protocol.quality
        if q.scorer not in self._scorers:
            self._scorers[q.scorer] = ClipScorer(q.scorer_model, q.scorer_pretrained, self.device)
            if self._pipe is not None:
                freeze_heap()  # out of the collector's reach beside the pipeline (handed back with it)
        return self._scorers[q.scorer]

    def ids(self, protocol: Protocol, environment: Environment) -> tuple[int, int, int]:
        """(environment, quality protocol, timing protocol) row ids."""
        q, t = protocol.quality, protocol.timing
        return (
            self.repo.ensure_environment(environment.key, environment.device, environment.libraries),
            self.repo.ensure_quality_protocol(q.key, prompt_source=q.prompt_source, prompts=list(q.prompts),
                                              prompts_sha256=q.prompts_sha256, seed=q.seed, scorer=q.scorer),
            self.repo.ensure_timing_protocol(t.key, images=t.images, policy=dataclasses.asdict(t.policy)),
        )

    def scope_run(
        self, base: BaseConfig, scope: Scope, protocol: Protocol, measure_quality: bool, generator: list[Generator],
        gate: threading.Lock | None = None, share: bool = False,
    ) -> ScopeRun:
        """A ScopeRun whose pipeline is loaded into ``generator`` (a one-element cache) on first need."""

        def load() -> Generator:
            if not generator:
                gen = Generator(self.pipeline(base), base.steps, base.height, base.width, self.device,
                                options=pipeline_info(base.pipeline).call_options)
                if gate is not None:
                    gen.gate = gate
                generator.append(gen)
            return generator[0]

        return ScopeRun(self.repo, scope, base, protocol, measure_quality=measure_quality, worker=self.worker,
                        load=load, scorer=lambda: self.scorer(protocol), share=share)

    def pipeline(self, base: BaseConfig) -> DiffusionPipeline:
        """The pipeline of ``base``: the one loaded last when only the scheduler or steps differ (the scheduler
        is swapped), else a fresh load (the previous one is released first)."""
        key = (base.pipeline, base.model, base.weights, base.dtype)
        if self._pipe is not None and self._pipe[0] == key:
            return reuse_pipeline(self._pipe[1], base)
        self.release()
        self.progress.describe(f"{base.label}: loading")
        pipe = load_pipeline(base, self.device)
        self._pipe = (key, pipe)
        freeze_heap()
        return pipe

    def held_pipeline(self) -> tuple[str, str, str, str] | None:
        """(pipeline, model, weights, dtype) of the pipeline in hand: what serves another scheduler or steps."""
        return self._pipe[0] if self._pipe is not None else None

    def release(self) -> None:
        """Drop the cached pipeline and hand its memory back."""
        if self._pipe is not None:
            self._pipe = None
            free_memory()

    def run(
        self, space: Space, *, search: SearchOptions | None = None, confirm_top: int = defaults.CONFIRM_TOP,
        precise_every: bool = False, canary: bool | None = None, shared_estimates: bool = True,
    ) -> RunSummary:
        """Search every base configuration (by default: measure every setting not stored), then time the
        contenders precisely (``confirm_top`` per round; 0: publish first estimates; ``precise_every``: time every
        measured setting precisely, which benchmarks of the timing itself need). ``shared_estimates``: a setting
        measured in a row of another scheduler with the same denoiser calls lends that row's first estimate
        (contenders are then timed precisely in their own row; never shared where nothing is timed precisely; where
        a time budget or a failed timing leaves a shared estimate leading, it is published labelled as one)."""
        share = shared_estimates and confirm_top > 0 and not precise_every
        if canary is None:  # GPUs: their CPU-bound timings move with the host; a CPU run's move with its own load
            canary = self.device.split(":")[0] == "cuda"
        search = search or SearchOptions()
        if search.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {search.strategy!r}; valid: {', '.join(STRATEGIES)}")
        started = time.perf_counter()
        deadline = time.monotonic() + search.time_budget if search.time_budget is not None else None
        protocol = Protocol.for_space(space, self.force_quality)
        environment = Environment.detect(self.device)
        env_id, quality_id, timing_id = self.ids(protocol, environment)
        generators: dict[str, list[Generator]] = {e.base.key: [] for e in space.entries}

        def scoped(env: int) -> list[_Item]:
            out = []
            for entry in space.entries:
                scope = self.repo.scope(entry.base, env, quality_id, timing_id)
                run = self.scope_run(entry.base, scope, protocol,
                                     measures_quality(entry.base.weights, protocol, self.force_quality),
                                     generators[entry.base.key], share=share)
                out.append(_Item(entry, scope, run))
            return out

        items = scoped(env_id)
        line = None
        if canary and any(self._missing(item, search) for item in items):
            complete = self._complete_state(environment, search, scoped)
            if complete is not None:  # a later state holds everything: nothing is measured, nothing to re-time
                env_id, items = complete
            else:
                state_id, line = self._canary(items, environment, protocol)
                if state_id != env_id:
                    env_id, items = state_id, scoped(state_id)
        summary = RunSummary(environment_id=env_id, canary=line)
        summary.speed_config_ids.extend(item.scope.speed_config_id for item in items)
        estimates = [self._estimate(item, search) for item in items]
        self.progress.start(sum(estimates))
        try:
            for index, item in enumerate(items):
                if deadline is not None and time.monotonic() >= deadline and self._missing(item, search):
                    summary.budget_stop = f"time budget reached before {len(items) - index} base configuration(s)"
                    break
                done_before = summary.new
                try:
                    self._search(item, summary, search, deadline)
                    if confirm_top and not (deadline is not None and time.monotonic() >= deadline):
                        self._precise(item, summary, search.max_loss, confirm_top, precise_every)
                finally:
                    self._unload(generators[item.entry.base.key], summary)
                # the bar counted this item's estimate; a search that stopped early hands the rest back
                estimates[index] = summary.new - done_before
                self.progress.retotal(sum(estimates))
        finally:
            self.release()  # the pipeline, and what freeze_heap set aside with it
        if confirm_top and deadline is not None and time.monotonic() >= deadline:
            summary.budget_stop = (summary.budget_stop or "time budget reached") + ": upper bounds not all timed precisely"
        summary.wall_seconds = time.perf_counter() - started
        return summary

    def _states(self, environment: Environment) -> list[tuple[int, int]]:
        """(n, environment id) of every stored state of ``environment`` (1: the environment itself; see
        ``Environment.state``), in order."""
        out = []
        while (found := self.repo.environment_id(environment.state(len(out) + 1).key)) is not None:
            out.append((len(out) + 1, found))
        return out

    def _held(self, item: _Item, environment_id: int) -> SpeedBaseline | None:
        """``item``'s stored speed baseline in another environment (a state of its own)."""
        return self.repo.measurements.speed_baseline(dataclasses.replace(item.scope, environment_id=environment_id))

    def _complete_state(
        self, environment: Environment, search: SearchOptions, scoped: Callable[[int], list[_Item]],
    ) -> tuple[int, list[_Item]] | None:
        """The first later state of ``environment`` (2, 3, ...) that already holds everything the space needs:
        a run that would measure nothing there re-times nothing (as a fully stored first state does)."""
        for _, found in self._states(environment)[1:]:
            items = scoped(found)
            if not any(self._missing(item, search) for item in items):
                return found, items
        return None

    def _canary(self, items: list[_Item], environment: Environment, protocol: Protocol) -> tuple[int, str | None]:
        """Before adding to an environment that holds speed baselines of this space, re-time the cheapest of them
        (one timing-set pass, not stored) and find the state of the machine it matches: the stored environment,
        or one of its later states (``Environment.state``), or a new state where none matches. (environment id
        to add to, the line that says so; None where it matches the first)."""
        stored = [i for i in items if i.run.speed_base is not None]
        if not stored:
            return items[0].scope.environment_id, None
        item = min(stored, key=lambda i: i.run.speed_base.time)  # type: ignore[union-attr]
        gen = item.run.generator()
        self.progress.describe(f"{item.entry.base.label}: canary (re-timing its stored speed baseline)")
        states = self._states(environment)
        times = [speed_baseline(gen, item.run.timing_set, protocol.timing.policy).time]
        match = self._state_matching(item, states, times)
        if match is None:  # one pass can be unlucky: a second must miss too before the machine counts as changed
            times.append(speed_baseline(gen, item.run.timing_set, protocol.timing.policy).time)
            match = self._state_matching(item, states, times)
        label = f"{item.entry.base.label} baseline {' / '.join(f'{t:.3f}' for t in times)} s per image now"
        if match is not None:
            n, found = match
            return found, (None if n == 1 else f"canary: {label} matches environment {found} "
                                               f"({environment.state(n).device}); new speeds are added there")
        stored_times = [f"{held.time:.3f} s" + ("" if n == 1 else f" (state {n})")
                        for n, found in states if (held := self._held(item, found)) is not None]
        variant = environment.state(len(states) + 1)
        new_id = self.repo.ensure_environment(variant.key, variant.device, variant.libraries)
        return new_id, (f"canary: {label}, stored {', '.join(stored_times) or 'none'}: this machine is not in the "
                        f"state its stored speeds were measured in; new speeds are kept apart as environment {new_id} "
                        f"({variant.device})")

    def _state_matching(self, item: _Item, states: list[tuple[int, int]], times: list[float]) -> tuple[int, int] | None:
        """The first of ``states`` whose stored baseline of ``item`` one of ``times`` is within (``CANARY_TOLERANCE``,
        or three stored spreads if wider); a state that holds no baseline of this configuration says nothing either
        way and is passed over."""
        for n, found in states:
            held = self._held(item, found)
            if held is not None and any(abs(t - held.time) <= max(defaults.CANARY_TOLERANCE * held.time,
                                                                    3 * held.time_spread) for t in times):
                return n, found
        return None

    @staticmethod
    def _settings(item: _Item) -> tuple[AccelSetting, ...]:
        return tuple(s for s in item.entry.settings if not s.is_baseline)

    def _missing(self, item: _Item, search: SearchOptions) -> bool:
        return not item.run.baselines_stored() or any(not item.run.stored(s, search.max_loss) for s in self._settings(item))

    def _estimate(self, item: _Item, search: SearchOptions) -> int:
        """Upper estimate of the measurements this item needs (the progress bar's share)."""
        missing = sum(1 for s in self._settings(item) if not item.run.stored(s, search.max_loss))
        if search.max_trials is not None:
            missing = min(missing, search.max_trials)
        return missing + (not item.run.baselines_stored())

    def _unload(self, generator: list[Generator], summary: RunSummary) -> None:
        """Count a base configuration's generations; its pipeline stays cached for the next one."""
        if generator:
            gen = generator.pop()
            summary.generation_seconds += gen.generation_seconds
            summary.images += gen.images

    def predicted_speedups(self, item: _Item, settings: tuple[AccelSetting, ...]) -> dict[str, float]:
        """The speed-up the speed model of what this environment stores predicts for each setting it can predict
        (its predicted time of the baseline over its predicted time of the setting): priors for the search."""
        from sweep.measurement.speed_model import SpeedModel

        base, scope = item.entry.base, item.scope
        model = SpeedModel(self.repo.measurements.speed_observations([scope.environment_id]))
        family = (scope.environment_id, base.pipeline, base.height, base.width, base.dtype, base.batch_size)
        baseline = model.predict(family, base.scheduler, base.steps, AccelSetting.baseline())
        if not baseline:
            return {}
        times = {s.key: model.predict(family, base.scheduler, base.steps, s) for s in settings}
        return {k: baseline / t for k, t in times.items() if t}

    @staticmethod
    def predicted_order(problem: Problem) -> tuple[AccelSetting, ...]:
        """The grid's order: fastest predicted first (settings without a prediction keep their order, after the
        predicted ones), so a time budget that ends a row early has spent it where the bound is likely to be."""
        ranked = problem.by_prediction(problem.settings)
        return (*ranked, *(s for s in problem.settings if s.key not in problem.predicted))

    def _strategy(self, item: _Item, search: SearchOptions) -> tuple[Strategy, str | None]:
        if search.strategy == "grid":
            return Grid(), None
        if search.strategy == "frontier":
            return Frontier(), None
        import optuna

        scope = item.scope
        name = (f"sweep:{item.entry.base.label}:bc{scope.base_config_id}-env{scope.environment_id}"
                f"-q{scope.quality_protocol_id}-t{scope.timing_protocol_id}:loss={search.max_loss:g}")
        if self._optuna_storage is None:
            # the URL as storage.engine read it (postgresql:// means psycopg), not as it was typed
            self._optuna_storage = optuna.storages.RDBStorage(self.repo.engine.url.render_as_string(hide_password=False))
        return OptunaSearch(storage=self._optuna_storage, study_name=name, patience=search.patience), name

    def _write(self, rows: list, statements: list[object] = ()) -> list[bool]:  # type: ignore[type-arg,assignment]
        if not rows and not statements:
            return []
        with self.repo.session() as s:
            for statement in statements:
                s.execute(statement)  # type: ignore[call-overload]
            return self.repo.insert_ignore(s, rows)

    def _outcome(self, run: ScopeRun, setting: AccelSetting, stored: bool) -> Outcome:
        speed = run.speeds.get(setting.key)
        quality = run.quality_of(setting)
        if speed is None or speed.status != "done":
            return Outcome(setting, "failed", stored=stored)
        loss = quality.score_loss if quality is not None and quality.status != "failed" else None
        if run.measure_quality and (quality is None or quality.status == "failed"):
            return Outcome(setting, "failed", speed.published, None, stored=stored)
        return Outcome(setting, "done", speed.published, loss, stored=stored)

    def _search(self, item: _Item, summary: RunSummary, search: SearchOptions, deadline: float | None) -> None:
        """Run the strategy over one base configuration; its pipeline is loaded only if something must be measured."""
        run, base = item.run, item.entry.base
        settings = self._settings(item)
        unmeasured = any(not run.stored(s, search.max_loss) for s in settings)
        problem = Problem(base.label, settings, search.max_loss, search.seed, quality_known=run.measure_quality,
                          predicted=self.predicted_speedups(item, settings) if unmeasured else {})
        if search.strategy == "grid":
            problem = dataclasses.replace(problem, settings=self.predicted_order(problem))
        summary.stored += sum(1 for s in settings if run.stored(s, search.max_loss)) + run.baselines_stored()

        def ensure_baselines() -> None:
            if not run.baselines_stored():
                self.progress.describe(f"{base.label}: baseline")
                self._write(run.baseline_rows())
                run.refresh()
                summary.new += 1
                self.progress.advance()

        def evaluate(setting: AccelSetting) -> Outcome:
            if run.stored(setting, search.max_loss):
                return self._outcome(run, setting, stored=True)
            ensure_baselines()
            self.progress.describe(f"{base.label}: {describe(setting)}")
            rows, statements = run.setting_rows(setting, search.max_loss)
            self._write(rows, statements)
            run.refresh()
            summary.new += 1
            summary.failed += any(getattr(r, "status", None) == "failed" for r in rows)
            summary.rejected += any(getattr(r, "status", None) == "rejected" for r in rows)
            self.progress.advance()
            return self._outcome(run, setting, stored=False)

        strategy, study_name = self._strategy(item, search)
        evals = Evaluations(
            problem, evaluate, max_trials=search.max_trials, deadline=deadline,
            is_stored=lambda s: run.stored(s, search.max_loss),
        )
        if deadline is None or time.monotonic() < deadline:
            ensure_baselines()
        result = strategy.search(evals)
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

    def _precise(self, item: _Item, summary: RunSummary, max_loss: float, top: int, every: bool = False) -> None:
        """Time the contenders precisely, round after round, until no first estimate can beat the bound.

        The largest of many noisy first estimates is biased upward; a fresh paired timing of every setting
        that can still be the bound removes that selection bias from the published value.
        """
        run = item.run
        failed: set[str] = set()
        timed: set[str] = set()
        while todo := run.precise_todo(max_loss, failed, every=every)[:top]:
            # the round's contenders together, one baseline run per round serving them all, each against the best
            # precise interval so far and the group's; a setting settled under a leader that is out at this
            # threshold is owed a timing to the protocol's width: no bar at all
            owed = [k for k in todo if run.owed(k)]
            fresh = [k for k in todo if k not in owed]
            if fresh:
                self._precise_group(item, fresh, lambda: None if every else run.precise_bar(max_loss), not every,
                                    failed, timed)
            else:
                self._precise_group(item, owed, lambda: None, False, failed, timed)
        # each setting once, as it ended: one settled below a leader and then timed again counts as what it became
        summary.precise += len(timed)
        summary.below_leader += sum(1 for key in timed if (held := run.speeds.get(key)) is not None and held.settled_below)

    def _precise_group(self, item: _Item, keys: list[str], bar: Callable[[], float | None], settle: bool,
                       failed: set[str], timed: set[str]) -> None:
        """Time ``keys`` precisely together, each against ``bar()`` (read when its timing starts) and, with
        ``settle``, the group's intervals; stored in one transaction. The keys whose timing was stored join ``timed``,
        those that failed ``failed``."""
        run = item.run
        names = ", ".join(describe(AccelSetting.from_key(k)) for k in keys)
        self.progress.describe(f"{item.entry.base.label}: timing {names} precisely")
        try:
            saved = self.repo.measurements.save_precise(*run.precise_statements(keys, bar(), settle=settle))
        except Exception:
            if len(keys) == 1:  # keeps its first estimate; the bound says it is not precise
                log.warning("precise timing of %s failed", keys[0], exc_info=True)
                failed.add(keys[0])
                run.refresh()
                return
            # one at a time, so that a failing setting keeps the others' timings (the group's pairs are lost)
            log.warning("timing %d settings together failed; timing them one at a time", len(keys), exc_info=True)
            for key in keys:
                self._precise_group(item, [key], bar, settle, failed, timed)
            return
        for key, rows in zip(keys, saved, strict=True):
            if not rows:  # it would be owed again and again: the round loop would never end
                log.warning("precise timing of %s matched no stored speed; its first estimate stands", key)
                failed.add(key)
            else:
                timed.add(key)
        run.refresh()


def freeze_heap() -> None:
    """Move every object alive now (the pipeline just loaded, the libraries imported) out of the garbage collector's
    reach: a full collection then walks only what was made since, instead of pausing a timed call for the whole
    heap (on an H100, one such pause took 394 ms inside a 0.79 s call of a 0.28 s setting and widened a precise timing's interval from
    ±6.7% without that pair to ±14.5%, docs/measurements/2026-12-06-h100-checked.md). :func:`free_memory` hands them back."""
    gc.collect()
    gc.freeze()


def free_memory() -> None:
    """Collect garbage and hand cached CUDA memory back; call once the last reference to a pipeline is gone
    (what :func:`freeze_heap` set aside is collectable again first)."""
    import torch

    gc.unfreeze()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
