"""Workers: take tasks from the shared queue, measure them, write results under the task's lease.

One worker per device. A worker keeps the pipeline of its last task loaded and prefers tasks of the same base
configuration; it renews its lease from a heartbeat thread that waits while a generation is timed (it takes
the generator's gate); the worker that finishes a scope's last setting queues the scope's precise timings; a
worker exits when no task of its environment is pending or running anywhere.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import sweep._compat  # noqa: F401  (before diffusers)
from search_space import defaults
from search_space.setting import AccelSetting
from search_space.spec import Space
from storage import Repository, Scope
from storage.queue import BASELINE_KEY, Claim, WorkQueue
from sweep.accelerators import describe
from sweep.measurement.environment import Environment
from sweep.measurement.measure import Generator
from sweep.measurement.protocol import Protocol, QualityProtocol, TimingProtocol
from sweep.progress import NoProgress, ProgressSink
from sweep.study.runner import Runner, measures_quality, worker_name
from sweep.study.scope import ScopeRun

log = logging.getLogger(__name__)


@dataclass
class WorkerSummary:
    measured: int = 0
    failed: int = 0
    retried: int = 0
    lost: int = 0
    """Results discarded because the lease had expired and another worker took the task."""
    wall_seconds: float = 0.0
    generation_seconds: float = 0.0
    built_ahead: int = 0
    """Pipelines built while nothing was claimable (waiting for a baseline another worker measured)."""


class _Heartbeat(threading.Thread):
    """Renews the lease every lease/3 seconds, never during a timed generation: it holds the generator's gate
    while it talks to the database, and waits for it while a generation runs."""

    def __init__(self, queue: WorkQueue, claim: Claim, owner: str, gate: threading.Lock) -> None:
        super().__init__(daemon=True)
        self.queue, self.claim, self.owner, self.gate = queue, claim, owner, gate
        self.stopped = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stopped.wait(self.queue.lease_seconds / 3):
            with self.gate:
                if self.stopped.is_set():
                    return
                try:
                    if not self.queue.renew(self.claim, self.owner):
                        self.lost = True
                        return
                except Exception:  # a failed renewal is retried at the next beat; the lease has slack
                    log.warning("lease renewal failed", exc_info=True)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


class Worker:
    def __init__(
        self, repo: Repository, device: str, *, lease_seconds: float = defaults.LEASE_SECONDS, poll_seconds: float = 2.0,
        progress: ProgressSink | None = None,
    ) -> None:
        self.repo = repo
        self.device = device
        self.queue = WorkQueue(repo, lease_seconds)
        self.poll_seconds = poll_seconds
        self.name = worker_name()
        self.progress = progress or NoProgress()
        self.runner = Runner(repo, device, self.progress)
        self.gate = threading.Lock()
        self._protocols: dict[tuple[int, int], Protocol] = {}
        self._loaded: tuple[tuple[int, int, int, int, bool], ScopeRun, list[Generator]] | None = None
        self._unbuildable: set[int] = set()

    def _protocol(self, scope: Scope) -> Protocol:
        key = (scope.quality_protocol_id, scope.timing_protocol_id)
        if key not in self._protocols:
            self._protocols[key] = Protocol(
                QualityProtocol.from_row(self.repo.quality_protocol_row(scope.quality_protocol_id)),
                TimingProtocol.from_row(self.repo.timing_protocol_row(scope.timing_protocol_id)),
            )
        return self._protocols[key]

    def _scope_run(self, claim: Claim, summary: WorkerSummary) -> ScopeRun:
        s = claim.scope
        key = (s.base_config_id, s.environment_id, s.quality_protocol_id, s.timing_protocol_id, claim.measure_quality)
        if self._loaded is None or self._loaded[0] != key:
            self._unload(summary)
            generator: list[Generator] = []
            run = self.runner.scope_run(self.repo.base_config(s.base_config_id), s, self._protocol(s),
                                        claim.measure_quality, generator, gate=self.gate, share=claim.confirm_top > 0)
            self._loaded = (key, run, generator)
        self._loaded[1].refresh()
        return self._loaded[1]

    def _unload(self, summary: WorkerSummary, release: bool = False) -> None:
        """Forget the scope in hand (its pipeline stays cached for a next scope of the same model, unless
        ``release``)."""
        if self._loaded is not None:
            for gen in self._loaded[2]:
                summary.generation_seconds += gen.generation_seconds
            self._loaded = None
        if release:
            self.runner.release()

    def run(self) -> WorkerSummary:
        started = time.perf_counter()
        summary = WorkerSummary()
        environment = Environment.detect(self.device)
        env_id = self.repo.ensure_environment(environment.key, environment.device, environment.libraries)
        try:
            while True:
                prefer = self._loaded[0][0] if self._loaded else None
                held = self.runner.held_pipeline()
                claim = self.queue.claim(env_id, self.name, prefer_base_config=prefer, prefer_pipeline=held)
                if claim is None:
                    if self.queue.outstanding(env_id) == 0:
                        break
                    self._build_ahead(env_id, held, summary)
                    time.sleep(self.poll_seconds)  # others hold the rest; an expired lease frees a task
                    continue
                self._work(claim, summary)
        finally:
            self._unload(summary, release=True)
            summary.wall_seconds = time.perf_counter() - started
        return summary

    def _build_ahead(self, env_id: int, held: tuple[str, str, str, str] | None, summary: WorkerSummary) -> None:
        """With nothing to claim, build the pipeline of the most expensive configuration whose tasks wait for a
        baseline another worker is measuring, so that its settings start here the moment that baseline lands."""
        for base_id in self.queue.waiting_base_configs(env_id):
            if base_id in self._unbuildable:
                continue
            base = self.repo.base_config(base_id)
            if (base.pipeline, base.model, base.weights, base.dtype) == held:
                return  # already in hand
            self._unload(summary)  # the scope in hand lets its pipeline go
            self.progress.describe(f"{base.label}: building ahead")
            try:
                self.runner.pipeline(base)
            except Exception:  # (its tasks will fail or retry on their own; waiting must not end the worker)
                log.warning("building %s ahead failed; it is not built ahead again", base.label, exc_info=True)
                self._unbuildable.add(base_id)
                self.runner.release()
                continue
            summary.built_ahead += 1
            return

    def _work(self, claim: Claim, summary: WorkerSummary) -> None:
        heartbeat = _Heartbeat(self.queue, claim, self.name, self.gate)
        heartbeat.start()
        statements: list[object] = []
        rows: list[object] = []
        try:
            run = self._scope_run(claim, summary)
            label = run.base.label
            if claim.kind == "baseline":
                self.progress.describe(f"{label}: baseline")
                rows = list(run.baseline_rows())
            elif claim.kind == "setting":
                setting = AccelSetting.from_key(claim.setting_key)
                self.progress.describe(f"{label}: {describe(setting)}")
                found, statements = run.setting_rows(setting, claim.max_loss, catch_errors=False)
                rows = list(found)
                summary.failed += any(getattr(r, "status", None) == "failed" for r in rows)
            else:
                self.progress.describe(f"{label}: timing {describe(AccelSetting.from_key(claim.setting_key))} precisely")
                statements = [run.precise_statement(claim.setting_key, run.precise_below(claim.setting_key, claim.max_loss))]
        except Exception as exc:
            log.warning("task %s failed (attempt %d of %d)", claim.task_id, claim.attempt, claim.max_attempts, exc_info=True)
            heartbeat.stop()
            outcome = self.queue.release(claim, self.name, f"{type(exc).__name__}: {exc}")
            summary.retried += outcome == "retry"
            summary.failed += outcome == "failed"
            self._unload(summary, release=True)  # the pipeline may be in a bad state (patched, out of memory)
            return
        heartbeat.stop()

        def write(session: object) -> None:
            for statement in statements:
                session.execute(statement)  # type: ignore[attr-defined]
            self.repo.insert_ignore(session, rows)  # type: ignore[arg-type]

        if self.queue.complete(claim, self.name, write):
            summary.measured += 1
            self._queue_precise(claim, run)
        else:
            summary.lost += 1
        self.progress.advance()

    def _queue_precise(self, claim: Claim, run: ScopeRun) -> None:
        """Once a scope has nothing outstanding, queue precise timings of its contenders (none: the bound is
        settled). Whoever finishes the scope's last task sees zero outstanding, so none is missed."""
        if not claim.confirm_top or self.queue.scope_outstanding(claim.scope):
            return
        run.refresh()
        enqueue_precise(self.queue, run, claim.max_loss, claim.confirm_top)


PROXY_SECONDS_PER_STEP_MEGAPIXEL = 0.1
"""A configuration's cost before its baseline is measured here: about what an SD-class denoiser step costs per
megapixel at batch 1 on a current GPU (SD1.5 at 512², 20 steps: about 0.5 s an image). It only orders the queue."""


def task_cost(run: ScopeRun) -> float:
    """Seconds per image of the scope's unaccelerated pipeline: measured here where its baseline is stored, else
    ``steps × megapixels × PROXY_SECONDS_PER_STEP_MEGAPIXEL`` (per image, as a stored time is)."""
    if run.speed_base is not None:
        return run.speed_base.time
    return proxy_cost(run.base.steps, run.base.height, run.base.width)


def proxy_cost(steps: int, height: int, width: int) -> float:
    return steps * height * width / 1e6 * PROXY_SECONDS_PER_STEP_MEGAPIXEL


def enqueue_precise(queue: WorkQueue, run: ScopeRun, max_loss: float, confirm_top: int) -> int:
    queued = queue.queued_keys(run.scope, "precise")
    wanted = run.precise_todo(max_loss)
    # a setting owed a timing to the protocol's width: its finished task is taken again (timed with no bar: it
    # cannot settle again)
    again = queue.reopen(run.scope, "precise", [k for k in wanted if k in queued and run.owed(k)][:confirm_top])
    todo = [k for k in wanted if k not in queued][:max(confirm_top - again, 0)]
    return again + queue.enqueue(run.scope, "precise", todo, measure_quality=run.measure_quality, max_loss=max_loss,
                                 confirm_top=confirm_top, cost=task_cost(run))


def enqueue_space(
    repo: Repository, space: Space, device: str, *, max_loss: float, confirm_top: int, max_attempts: int = 3,
    force_quality: bool = False,
) -> tuple[int, int, list[int]]:
    """Queue what is missing of each base configuration for the environment of ``device`` on this machine:
    its baselines, its settings, and, where everything is stored already, the precise timings still owed.
    Returns (the environment's id, tasks added, the speed configurations' ids)."""
    runner = Runner(repo, device)
    protocol = Protocol.for_space(space, force_quality)
    env_id, quality_id, timing_id = runner.ids(protocol, Environment.detect(device))
    queue = WorkQueue(repo)
    added = 0
    speed_ids = []
    for entry in space.entries:
        scope = repo.scope(entry.base, env_id, quality_id, timing_id)
        speed_ids.append(scope.speed_config_id)
        quality = measures_quality(entry.base.weights, protocol, force_quality)
        run = runner.scope_run(entry.base, scope, protocol, quality, [])
        options = dict(measure_quality=quality, max_loss=max_loss, confirm_top=confirm_top, max_attempts=max_attempts,
                       cost=task_cost(run))
        if not run.baselines_stored():
            added += queue.enqueue(scope, "baseline", [BASELINE_KEY], **options)  # type: ignore[arg-type]
        missing = [s.key for s in entry.settings if not s.is_baseline and not run.stored(s, max_loss)]
        added += queue.enqueue(scope, "setting", missing, **options)  # type: ignore[arg-type]
        if not missing and run.baselines_stored() and confirm_top:
            added += enqueue_precise(queue, run, max_loss, confirm_top)
    return env_id, added, speed_ids


THREADS_VARIABLE = "SWEEP_CPU_THREADS"


def cpu_threads(devices: list[str]) -> int | None:
    """Torch threads per CPU worker so that the CPU workers share the cores instead of oversubscribing them."""
    cpu_workers = sum(1 for d in devices if d.split(":")[0] == "cpu")
    if not cpu_workers:
        return None
    return max(1, (os.cpu_count() or 1) // cpu_workers)


def apply_cpu_threads() -> None:
    """In a worker process: take the thread count its coordinator chose (part of the environment's key)."""
    threads = os.environ.get(THREADS_VARIABLE)
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def spawn_workers(url: str, devices: list[str], lease_seconds: float) -> list[subprocess.Popen[bytes]]:
    """One ``sweep worker`` process per device, on this machine."""
    env = dict(os.environ)
    threads = cpu_threads(devices)
    if threads is not None:
        env[THREADS_VARIABLE] = str(threads)
    return [
        subprocess.Popen([sys.executable, "-m", "sweep", "worker", "--db", url, "--device", device, "--quiet",
                          "--lease", str(lease_seconds)], env=env)
        for device in devices
    ]
