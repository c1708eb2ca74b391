"""Workers: take tasks from the shared queue, measure them, write results under the task's lease.

One worker per device. A worker keeps the pipeline of its last task loaded and prefers tasks of the same
base configuration; it renews its lease from a heartbeat thread while it measures; it exits when no task of
its environment is pending or running anywhere.
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
from search_space.setting import AccelSetting
from search_space.spec import Space
from storage.queue import Claim, WorkQueue
from storage.repository import Repository, Scope
from sweep.environment import Environment
from sweep.measure import Generator
from sweep.pipelines.loader import load_pipeline
from sweep.protocol import Protocol
from sweep.runner import ProgressSink, Runner, _NoProgress, free_memory, worker_name

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


class _Heartbeat(threading.Thread):
    def __init__(self, queue: WorkQueue, claim: Claim, owner: str) -> None:
        super().__init__(daemon=True)
        self.queue, self.claim, self.owner = queue, claim, owner
        self.stopped = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stopped.wait(self.queue.lease_seconds / 3):
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
        self, repo: Repository, device: str, *, lease_seconds: float = 60.0, poll_seconds: float = 2.0,
        progress: ProgressSink | None = None,
    ) -> None:
        self.repo = repo
        self.device = device
        self.queue = WorkQueue(repo, lease_seconds)
        self.poll_seconds = poll_seconds
        self.name = worker_name()
        self.runner = Runner(repo, device)
        self.progress = progress or _NoProgress()
        self._protocols: dict[int, Protocol] = {}
        self._loaded: tuple[tuple[int, int], Generator] | None = None

    def _protocol(self, protocol_id: int) -> Protocol:
        if protocol_id not in self._protocols:
            self._protocols[protocol_id] = Protocol.from_row(self.repo.protocol_row(protocol_id))
        return self._protocols[protocol_id]

    def _generator(self, scope: Scope, summary: WorkerSummary) -> Generator:
        key = (scope.base_config_id, scope.protocol_id)
        if self._loaded is None or self._loaded[0] != key:
            self._unload(summary)
            base = self.repo.base_config(scope.base_config_id)
            self.progress.describe(f"{base.label}: loading")
            gen = Generator(load_pipeline(base, self.device), base, self._protocol(scope.protocol_id), self.device)
            self._loaded = (key, gen)
        return self._loaded[1]

    def _unload(self, summary: WorkerSummary) -> None:
        if self._loaded is not None:
            summary.generation_seconds += self._loaded[1].generation_seconds
            self._loaded = None
            free_memory()

    def run(self) -> WorkerSummary:
        started = time.perf_counter()
        summary = WorkerSummary()
        environment = Environment.detect(self.device)
        env_id = self.repo.ensure_environment(environment.key, environment.device, environment.libraries)
        try:
            while True:
                prefer = self._loaded[0][0] if self._loaded else None
                claim = self.queue.claim(env_id, self.name, prefer_base_config=prefer)
                if claim is None:
                    if self.queue.outstanding(env_id) == 0:
                        break
                    time.sleep(self.poll_seconds)  # others hold the rest; an expired lease frees a task
                    continue
                self._work(claim, summary)
        finally:
            self._unload(summary)
            summary.wall_seconds = time.perf_counter() - started
        return summary

    def _work(self, claim: Claim, summary: WorkerSummary) -> None:
        heartbeat = _Heartbeat(self.queue, claim, self.name)
        heartbeat.start()
        try:
            gen = self._generator(claim.scope, summary)
            protocol = self._protocol(claim.scope.protocol_id)
            if claim.is_baseline:
                self.progress.describe(f"{gen.base.label}: baseline")
                fields = self.runner.baseline_fields(gen, protocol)
                row = Repository.baseline_row(claim.scope, **fields)  # type: ignore[arg-type]
            else:
                setting = AccelSetting.from_key(claim.setting_key)
                self.progress.describe(f"{gen.base.label}: {setting.describe()}")
                baseline = self.repo.baseline(claim.scope)
                assert baseline is not None  # the queue hands out trials only once their baseline is stored
                trial = self.runner.measure_trial(gen, baseline, setting, protocol, catch_errors=False)
                row = Repository.trial_row(claim.scope, trial)
                summary.failed += trial.status == "failed"
        except Exception as exc:
            log.warning("task %s failed (attempt %d of %d)", claim.task_id, claim.attempt, claim.max_attempts, exc_info=True)
            heartbeat.stop()
            outcome = self.queue.release(claim, self.name, f"{type(exc).__name__}: {exc}")
            summary.retried += outcome == "retry"
            summary.failed += outcome == "failed"
            self._unload(summary)  # the pipeline may be in a bad state (patched, out of memory)
            return
        heartbeat.stop()
        if self.queue.complete(claim, self.name, lambda s: s.add(row)):
            summary.measured += 1
        else:
            summary.lost += 1
        self.progress.advance()


def enqueue_space(repo: Repository, space: Space, device: str, max_attempts: int = 3) -> tuple[int, int]:
    """Queue the baseline and every setting of each base configuration not stored yet, for the environment of
    ``device`` on this machine. Returns (the environment's id, tasks added)."""
    runner = Runner(repo, device)
    protocol = Protocol.resolve(space.protocol)
    environment = Environment.detect(device)
    work, _ = runner.plan(space, protocol, environment)
    added = 0
    for item in work:
        added += WorkQueue(repo).enqueue(item.scope, [s.key for s in item.entry.settings], max_attempts)
    env_id = work[0].scope.environment_id if work else repo.ensure_environment(environment.key, environment.device, environment.libraries)
    return env_id, added


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
        subprocess.Popen([sys.executable, "-m", "sweep.cli", "worker", "--db", url, "--device", device, "--quiet",
                          "--lease", str(lease_seconds)], env=env)
        for device in devices
    ]
