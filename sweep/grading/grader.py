"""Grade a batch of jobs: skip what is stored, share each baseline's process among its tasks, store each
evaluation as soon as it ends (a run killed at any moment loses at most the evaluation in progress)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from storage import Repository
from storage.models import EvaluationRow
from sweep.grading.evaluate import Baseline, GradingProtocol, Outcome, Task, evaluate, start_baseline
from sweep.grading.formats import Job, result_entry
from sweep.grading.sandbox import ChildError, close_zygote
from sweep.measurement.environment import Environment


@dataclass(frozen=True)
class GradeSummary:
    entries: list[dict[str, object]]
    """``evaluation_results.json``'s entries, in the jobs' order."""
    graded: int
    stored: int
    environment: str


def _outcome_of(result: dict[str, object]) -> Outcome:
    fields = dict(result)
    for name in ("speedup_interval", "quality_interval"):
        if fields.get(name) is not None:
            fields[name] = tuple(fields[name])  # type: ignore[arg-type]
    return Outcome(**fields)  # type: ignore[arg-type]


@dataclass
class _Grading:
    repo: Repository
    device: str
    protocol: GradingProtocol
    scorer_factory: Callable[[], object] | None
    env_id: int
    seed: int | None
    scorer: object | None = None
    baselines: dict[str, Baseline | str] = field(default_factory=dict)
    """Per base configuration (or ground-truth file): its running baseline, or why it could not start."""

    def baseline(self, task: Task) -> Baseline | str:
        key = task.base.key if task.base is not None else f"gt:{task.gt_path}:{task.steps}"
        known = self.baselines.get(key)
        if isinstance(known, Baseline) and not known.child.alive():  # it failed in the last evaluation: start anew
            known.child.close()
            del self.baselines[key]
        if key not in self.baselines:
            for other in self.baselines.values():  # one baseline process at a time: memory, and a quiet device
                if isinstance(other, Baseline):
                    other.child.close()
            self.baselines = {k: v for k, v in self.baselines.items() if isinstance(v, str)}
            try:
                self.baselines[key] = start_baseline(task, self.device, self.protocol)
            except ChildError as exc:
                self.baselines[key] = f"the baseline: {exc}"
        return self.baselines[key]

    def quality_known(self, task: Task) -> bool:
        return self.scorer_factory is not None and (task.base is None or task.base.weights != "random")

    def grade(self, job: Job, digest: str) -> Outcome:
        task = job.task
        assert job.solution is not None
        started = time.perf_counter()
        baseline = self.baseline(task)
        if isinstance(baseline, str):
            outcome = Outcome().fail("evaluation_error", baseline)
        else:
            known = self.quality_known(task)
            if known and self.scorer is None:
                self.scorer = self.scorer_factory()  # type: ignore[misc]
            outcome = evaluate(task, job.solution, baseline, self.protocol, self.scorer if known else None,  # type: ignore[arg-type]
                               seed=self.seed, quality_known=known)
        outcome.seconds = time.perf_counter() - started
        self.repo.evaluations.save(EvaluationRow(
            task_id=task.task_id, task_key=task.key, solution_sha256=digest, environment_id=self.env_id,
            protocol_key=self.protocol.key, difficulty=task.difficulty, target=task.target, passed=outcome.passed,
            failure_reason=outcome.failure_reason, seed=int(outcome.seed or 0), result=asdict(outcome),
            solution_path=str(job.solution), gt_path=str(task.gt_path) if task.gt_path else None))
        return outcome

    def close(self) -> None:
        for baseline in self.baselines.values():
            if isinstance(baseline, Baseline):
                baseline.child.close()


def grade(
    repo: Repository, jobs: Sequence[Job], device: str, protocol: GradingProtocol, *,
    scorer_factory: Callable[[], object] | None, seed: int | None = None,
    on_start: Callable[[Job, int, int], None] | None = None, on_done: Callable[[Job, Outcome], None] | None = None,
) -> GradeSummary:
    """Grade each job not stored yet in this environment under ``protocol``; every job's entry.

    ``scorer_factory`` builds the CLIP scorer on first need (None: speed only). ``seed`` fixes every evaluation's
    seed (tests); by default each evaluation draws its own.
    """
    environment = Environment.detect(device)
    env_id = repo.ensure_environment(environment.key, environment.device, environment.libraries)
    stored = {(r["task_key"], r["solution_sha256"]): r for r in repo.evaluations.rows(environment_id=env_id,
                                                                                      protocol_key=protocol.key)}
    session = _Grading(repo, device, protocol, scorer_factory, env_id, seed)
    entries: list[dict[str, object]] = []
    graded = reused = 0
    # tasks of one baseline together, so that its process starts once
    order = sorted(range(len(jobs)), key=lambda i: (jobs[i].task.base.key if jobs[i].task.base else str(jobs[i].task.gt_path), i))
    results: dict[int, dict[str, object]] = {}
    try:
        for index in order:
            job = jobs[index]
            digest = hashlib.sha256(job.solution.read_bytes()).hexdigest() if job.solution is not None else None
            if job.task.problem is not None or digest is None:
                outcome = Outcome().fail("missing_required_information", job.task.problem or "no solution")
            elif (job.task.key, digest) in stored:
                outcome = _outcome_of(dict(stored[(job.task.key, digest)]["result"]))  # type: ignore[call-overload]
                reused += 1
            else:
                if on_start is not None:
                    on_start(job, graded + reused, len(jobs))
                outcome = session.grade(job, digest)
                graded += 1
            results[index] = result_entry(job, outcome, environment=environment.device, solution_sha256=digest)
            if on_done is not None:
                on_done(job, outcome)
    finally:
        session.close()
        close_zygote()
    entries = [results[i] for i in range(len(jobs))]
    return GradeSummary(entries, graded, reused, environment.device)
