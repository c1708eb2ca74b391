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

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

log = logging.getLogger(__name__)


class ProgressSink(TypingProtocol):
    def start(self, total: int) -> None: ...
    def describe(self, text: str) -> None: ...
    def advance(self) -> None: ...


class _NoProgress:
    def start(self, total: int) -> None:
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
        self._scorer: ClipScorer | None = None
        self._protocol: Protocol | None = None

    def _scorer_for(self, protocol: Protocol) -> ClipScorer:
        if self._scorer is None:
            self._scorer = ClipScorer(protocol.scorer_model, protocol.scorer_pretrained, self.device)
        return self._scorer

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

    def run(self, space: Space, *, confirm_for: float | None = None, confirm_top: int = 3) -> RunSummary:
        """Measure what is missing; then, with ``confirm_for`` (a max loss), confirm each upper bound."""
        started = time.perf_counter()
        protocol = Protocol.resolve(space.protocol)
        environment = Environment.detect(self.device)
        work, stored = self.plan(space, protocol, environment)
        summary = RunSummary(stored=stored, base_keys=[w.entry.base.key for w in work])
        self.progress.start(sum(len(w.missing) + (w.baseline is None) for w in work))
        for item in work:
            if item.missing or item.baseline is None:
                self._with_pipeline(item, protocol, summary, lambda gen, item=item: self._measure(gen, item, protocol, summary))
        if confirm_for is not None:
            for item in work:
                self._confirm(item, protocol, summary, confirm_for, confirm_top)
        summary.wall_seconds = time.perf_counter() - started
        return summary

    def _with_pipeline(self, item: _Work, protocol: Protocol, summary: RunSummary, body: Callable[[Generator], None]) -> None:
        base = item.entry.base
        self.progress.describe(f"{base.label}: loading")
        gen = Generator(load_pipeline(base, self.device), base, protocol, self.device)
        try:
            body(gen)
        finally:
            summary.generation_seconds += gen.generation_seconds
            del gen
            gc.collect()
            _empty_cuda_cache()

    def _measure(self, gen: Generator, item: _Work, protocol: Protocol, summary: RunSummary) -> None:
        base = item.entry.base
        scorer = self._scorer_for(protocol)
        baseline = item.baseline
        if baseline is None:
            self.progress.describe(f"{base.label}: baseline")
            run = measure_baseline(gen, protocol.timing)
            scores = scorer.score(run.images, list(protocol.prompts))
            baseline = self.repo.save_baseline(
                item.scope, time=run.seconds_per_image, time_spread=run.spread, clip_score=sum(scores) / len(scores),
                image_digests=run.digests, worker=self.worker, warmup_runs=run.warmup_runs,
                repeat_max_pixel_diff=run.repeat_max_pixel_diff,
            )
            summary.new += 1
            self.progress.advance()
        for setting in item.missing:
            self.progress.describe(f"{base.label}: {setting.describe()}")
            trial = self._trial(gen, baseline, setting, protocol, scorer)
            if self.repo.save_trial(item.scope, trial):
                summary.new += 1
                summary.failed += trial.status == "failed"
            self.progress.advance()

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
        self, gen: Generator, baseline: BaselineRecord, setting: AccelSetting, protocol: Protocol, scorer: ClipScorer
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
            clip_score=clip, score_loss=loss, n_images=len(run.images), patched_modules=patched,
        )


def _remove(applied: list[AppliedAccelerator]) -> None:
    while applied:
        applied.pop().remove()


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
