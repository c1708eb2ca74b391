"""Grade one solution against its task, measured the way sweep measures a bound.

The baseline (sweep's own build of the task's base configuration, or the task's ground-truth file) and the
solution each run in a child process (``sweep.grading.sandbox``). The grader observes both pipelines and compares
them field by field (pipeline class, scheduler class and configuration, every component's weights, device); it
then times them interleaved (A B, B A, ...) on its own clock, with the side not being timed stopped, under seeds
drawn for this evaluation (fresh seeds for every pair, so no output can be prepared or replayed), until the
speed-up's 95% interval lies wholly above or below the target (else ``borderline`` at ``max_pairs``). The images
of those same calls are checked (size, type, finite values, the steps that ran, a repeated prompt under a new
seed giving a new image) and scored per image against the baseline's image of the same prompt and seed.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from search_space import defaults
from search_space.base_config import BaseConfig
from sweep.grading.sandbox import Child, ChildError
from sweep.measurement.stats import Paired, TimingPolicy, paired_loss, reject

if TYPE_CHECKING:
    from sweep.scoring.base import Scorer

DIFFICULTIES = ("easy", "medium", "hard")
FAILURES = ("config_mismatch", "quality_threshold_exceeded", "speedup_target_not_met", "evaluation_error",
            "output_check_failed", "missing_required_information")
"""The former evaluator's reasons, and ``output_check_failed``: images that are not what the asked call produces."""
BUSY_SHARE = 0.25
"""A timed baseline call whose threads waited for a CPU longer than this share of it (another process held the
CPU: the scheduler's run delay) is no measurement: its pair is timed again."""


@dataclass(frozen=True)
class Task:
    """What a solution is graded against. ``base`` is known for tasks sweep wrote; for a former annotation it is
    observed from ``gt_path`` (the unaccelerated pipeline), with the steps read from the task's sentence."""

    task_id: str
    difficulty: str
    target: float | None
    max_loss: float = defaults.MAX_LOSS
    base: BaseConfig | None = None
    gt_path: Path | None = None
    steps: int | None = None
    prompt_context: str = ""
    target_environment: str | None = None
    upper_bound: float | None = None
    """The stored upper bound the target came from (for the plausibility check)."""
    problem: str | None = None
    """Why this task cannot be graded (``missing_required_information``)."""

    @property
    def key(self) -> str:
        """The task's content: a changed target or configuration is another task."""
        data = {"task_id": self.task_id, "difficulty": self.difficulty, "target": self.target,
                "max_loss": self.max_loss, "base": self.base.key if self.base else None,
                "gt": _file_sha256(self.gt_path) if self.gt_path else None, "steps": self.steps}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class GradingProtocol:
    prompts: tuple[str, ...]
    prompt_source: str
    scorer: str
    scorer_pretrained: str
    policy: TimingPolicy
    batch_size: int = 1
    request_seconds: float = defaults.GRADE_REQUEST_SECONDS
    load_seconds: float = defaults.GRADE_LOAD_SECONDS
    memory_bytes: int = defaults.GRADE_MEMORY_GIB * 2**30

    @property
    def key(self) -> str:
        data = {"prompts": hashlib.sha256("\n".join(self.prompts).encode()).hexdigest(), "scorer": self.scorer,
                "scorer_pretrained": self.scorer_pretrained, "policy": asdict(self.policy), "batch": self.batch_size}
        return "grade:" + hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Outcome:
    """One evaluation, in the former evaluator's terms plus what sweep adds."""

    config_match: bool | None = None
    actual_speedup: float | None = None
    speedup_interval: tuple[float, float] | None = None
    quality_loss: float | None = None
    quality_interval: tuple[float | None, float | None] | None = None
    quality_known: bool = False
    passed: bool | None = False
    achievement_rate: float | None = None
    failure_reason: str | None = None
    error: str | None = None
    borderline: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    pairs: int = 0
    baseline_time: float | None = None
    accelerated_time: float | None = None
    baseline_score: float | None = None
    accelerated_score: float | None = None
    mismatches: list[str] = field(default_factory=list)
    seed: int | None = None
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    """Wall seconds of each part: loading and observing, warm-up, timed pairs, checks."""
    output: str = ""

    def fail(self, reason: str, error: str | None = None) -> Outcome:
        self.failure_reason, self.passed = reason, False
        if error is not None:
            self.error = error
        return self


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- comparing what was observed --------------------------------------------------------------------------------

def mismatches(baseline: Mapping[str, object], solution: Mapping[str, object]) -> list[str]:
    """Each field where the solution's pipeline is not the base configuration's, named."""
    found = []
    for name in ("pipeline_class", "scheduler_class", "device"):
        if baseline.get(name) != solution.get(name):
            found.append(f"{name}: {solution.get(name)} (the task's: {baseline.get(name)})")
    base_config, sol_config = dict(baseline.get("scheduler_config") or {}), dict(solution.get("scheduler_config") or {})  # type: ignore[call-overload]
    changed = sorted(k for k in set(base_config) | set(sol_config) if base_config.get(k) != sol_config.get(k))
    if changed and baseline.get("scheduler_class") == solution.get("scheduler_class"):
        found.append(f"scheduler_config: {', '.join(changed[:5])} differ")
    base_parts, sol_parts = dict(baseline.get("components") or {}), dict(solution.get("components") or {})  # type: ignore[call-overload]
    for name in sorted(set(base_parts) | set(sol_parts)):
        b, s = base_parts.get(name), sol_parts.get(name)
        if b is None or s is None:
            found.append(f"component {name}: {'missing' if s is None else 'not in the task'}")
        elif b.get("class") != s.get("class"):
            found.append(f"component {name}: {s.get('class')} (the task's: {b.get('class')})")
        elif b.get("weights") != s.get("weights"):
            found.append(f"weights of {name} differ from the task's")
    return found


# -- checking images ------------------------------------------------------------------------------------------------

def check_images(images: np.ndarray | None, count: int, height: int, width: int) -> str | None:
    """Why a reply's images are not the ``count`` RGB images of ``height`` × ``width`` asked for (None: they are)."""
    if images is None:
        return "the call returned no images"
    if images.ndim != 4 or images.shape[0] != count or images.shape[3] != 3:
        return f"the call returned an array of shape {tuple(images.shape)}, not {count} RGB images"
    if images.shape[1:3] != (height, width):
        return f"images of {images.shape[1]}x{images.shape[2]}, not the {height}x{width} asked for"
    if not np.isfinite(images).all():
        return "images with NaN or infinite values"
    if images.min() < -1e-3 or images.max() > 1 + 1e-3:
        return "image values outside [0, 1]"
    return None


def replayed(prompts: Sequence[str], seeds: Sequence[int], solution: Sequence[np.ndarray],
             baseline: Sequence[np.ndarray]) -> str | None:
    """A prompt generated under two seeds must give two images wherever the baseline's two differ."""
    first: dict[str, int] = {}
    for i, prompt in enumerate(prompts):
        j = first.setdefault(prompt, i)
        if j != i and seeds[i] != seeds[j] and np.array_equal(solution[i], solution[j]) \
                and not np.array_equal(baseline[i], baseline[j]):
            return f"outputs replayed: prompt {prompt[:40]!r} under seeds {seeds[j]} and {seeds[i]} gave the same image"
    return None


def _pil(image: np.ndarray) -> object:
    from PIL import Image

    return Image.fromarray(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8))


# -- the evaluation ---------------------------------------------------------------------------------------------

@dataclass
class Baseline:
    """The baseline's process for one base configuration (or ground-truth file), shared by its tasks."""

    child: Child
    observed: dict[str, object]
    base: BaseConfig
    options: dict[str, object]
    steps_ran: object = None
    """(scheduler steps, latent sizes) of the baseline's calls."""


def start_baseline(task: Task, device: str, protocol: GradingProtocol) -> Baseline:
    """The baseline of ``task`` loaded in a child; ChildError when it cannot be."""
    child = Child(device, memory_bytes=protocol.memory_bytes, request_seconds=protocol.request_seconds, label="baseline")
    try:
        if task.base is not None:
            reply, _ = child.request({"op": "load", "base": asdict(task.base)}, protocol.load_seconds)
            base = task.base
        else:
            assert task.gt_path is not None and task.steps is not None
            observed = child.load_file(task.gt_path, protocol.load_seconds, None)
            reply = {"observed": observed}
            size = observed.get("native_size") or 512
            base = BaseConfig(str(observed["pipeline_class"]), str(task.gt_path), "pretrained",
                              str(observed["scheduler_class"]), task.steps, int(size), int(size), "float16", 1)  # type: ignore[call-overload]
    except ChildError:
        child.close()
        raise
    options = {"use_resolution_binning": False, "clean_caption": False} if "PixArt" in str(reply["observed"]["pipeline_class"]) else {}  # type: ignore[index]
    return Baseline(child, dict(reply["observed"]), base, options)  # type: ignore[call-overload]


def evaluate(
    task: Task, solution: Path, baseline: Baseline, protocol: GradingProtocol, scorer: Scorer | None, *,
    seed: int | None = None, quality_known: bool = True, log: Callable[[str], None] | None = None,
) -> Outcome:
    """Grade ``solution`` against ``task``; ``scorer`` None (or ``quality_known`` False) grades speed only."""
    outcome = Outcome(seed=secrets.randbits(32) if seed is None else seed)
    child = Child(baseline.child.device, memory_bytes=protocol.memory_bytes, request_seconds=protocol.request_seconds,
                  label="solution")
    try:
        _run(task, solution, baseline, child, protocol, scorer if quality_known else None, outcome, log)
    except ChildError as exc:
        outcome.fail("evaluation_error", f"the solution: {exc}")
    except BaselineError as exc:
        outcome.fail("evaluation_error", str(exc))
    finally:
        baseline.child.resume()
        outcome.output = child.close()
    return outcome


def _run(task: Task, solution: Path, baseline: Baseline, child: Child, protocol: GradingProtocol,
         scorer: Scorer | None, outcome: Outcome, log: Callable[[str], None] | None) -> None:
    base = baseline.base
    clock = time.perf_counter()
    key = secrets.randbits(63)  # the weights' checksum key: new for every evaluation, never known in advance
    try:
        reply, _ = baseline.child.request({"op": "observe", "key": key}, protocol.load_seconds)
    except ChildError as exc:
        raise BaselineError(f"the baseline: {exc}") from None
    expected = dict(reply["observed"])  # type: ignore[call-overload]
    baseline.child.stop()
    found = mismatches(expected, child.load_file(solution, protocol.load_seconds, key))
    outcome.phases["load"] = time.perf_counter() - clock
    outcome.config_match = not found
    if found:
        outcome.mismatches = found
        outcome.fail("config_mismatch", "; ".join(found))
        return
    warm_rng, rng = np.random.default_rng([outcome.seed, 0]), np.random.default_rng([outcome.seed, 1])
    work = [list(protocol.prompts[i: i + base.batch_size]) for i in range(0, len(protocol.prompts), base.batch_size)]
    seen: dict[str, list[tuple[int, np.ndarray, np.ndarray]]] = {}
    base_seconds: list[float] = []
    sol_seconds: list[float] = []
    base_scores: list[float] = []
    sol_scores: list[float] = []

    def call(side: Child, other: Child, prompts: list[str], seeds: list[int]) -> tuple[float, np.ndarray, object]:
        other.stop()
        side.resume()
        request = {"op": "generate", "prompts": prompts, "seeds": seeds, "steps": base.steps, "height": base.height,
                   "width": base.width, "options": baseline.options}
        try:
            header, images = side.request(request)
        except ChildError as exc:
            if side is baseline.child:
                raise BaselineError(f"the baseline: {exc}") from None
            raise
        seconds = side.last_seconds / len(prompts)
        problem = check_images(images, len(prompts), base.height, base.width)
        if problem is not None:
            raise _Invalid(problem)
        return seconds, images, (header.get("steps_ran"), header.get("latent_sizes"))  # type: ignore[return-value]

    try:
        # warm-up: each side's first batch until two runs agree (untimed for the verdict)
        for side, other in ((baseline.child, child), (child, baseline.child)):
            last: float | None = None
            for _ in range(protocol.policy.warmup_cap):
                seconds, _, ran = call(side, other, work[0], [int(s) for s in warm_rng.integers(0, 2**31, len(work[0]))])
                if side is baseline.child and baseline.steps_ran is None:
                    baseline.steps_ran = ran
                if last is not None and abs(seconds - last) <= protocol.policy.warmup_tolerance * min(seconds, last):
                    break
                last = seconds
        outcome.phases["warm-up"] = time.perf_counter() - clock - outcome.phases["load"]
        # every prompt twice, under different seeds, before anything is decided: a replayed output shows
        minimum = max(protocol.policy.min_pairs, 2 * len(work))
        paired: Paired | None = None
        busy = 0
        while len(base_seconds) < max(protocol.policy.max_pairs, minimum):
            index = len(base_seconds)
            prompts = work[index % len(work)]
            seeds = [int(s) for s in rng.integers(0, 2**31, len(prompts))]
            order = ((baseline.child, child), (child, baseline.child))
            results = {}
            for side, other in order if index % 2 == 0 else order[::-1]:
                results[side is child] = call(side, other, prompts, seeds)
            (b_s, b_img, _), (s_s, s_img, s_ran) = results[False], results[True]
            held = baseline.child  # its last request is this pair's baseline call
            b_wait = held.last_waited / held.last_seconds if held.last_waited is not None and held.last_seconds else None
            if b_wait is not None and b_wait > BUSY_SHARE:
                # another process held the CPU the baseline's launches needed: its time is the machine's, not its own,
                # and the pair says nothing. Only the baseline is judged so: sweep's own build, with its known
                # threads; a solution's threads may wait for each other (its own doing, and a part of its time)
                busy += 1
                if log is not None:
                    log(f"pair {index + 1} timed again: the baseline waited {100 * b_wait:.0f}% of its call for a CPU")
                if busy > protocol.policy.max_pairs:
                    outcome.fail("evaluation_error", f"the machine is busy: in {busy} pairs the baseline waited for a CPU "
                                 f"over {100 * BUSY_SHARE:.0f}% of its call ({100 * b_wait:.0f}% in the last); grade on a "
                                 "machine nothing else runs on")
                    return
                continue
            problem = _ran_differently(s_ran, baseline.steps_ran)
            if problem is not None:
                outcome.config_match = False
                outcome.mismatches = [problem]
                outcome.fail("config_mismatch", problem)
                return
            base_seconds.append(b_s)
            sol_seconds.append(s_s)
            for k, prompt in enumerate(prompts):
                seen.setdefault(prompt, []).append((seeds[k], s_img[k], b_img[k]))
            if scorer is not None:
                base_scores.extend(scorer.score([_pil(i) for i in b_img], prompts))  # type: ignore[arg-type]
                sol_scores.extend(scorer.score([_pil(i) for i in s_img], prompts))  # type: ignore[arg-type]
            if log is not None:
                log(f"pair {index + 1}: baseline {b_s:.4f} s, solution {s_s:.4f} s per image")
            if len(base_seconds) >= minimum:
                paired = Paired(tuple(base_seconds), tuple(sol_seconds))
                if _decided(paired, task, protocol.policy):
                    break
    except _Invalid as exc:
        outcome.fail("output_check_failed", str(exc))
        return
    if busy:
        outcome.flags.append(f"{busy} pair(s) timed again: the baseline waited for a CPU over {100 * BUSY_SHARE:.0f}% of its "
                             "call (another process on the machine)")
    outcome.phases["pairs"] = time.perf_counter() - clock - sum(outcome.phases.values())
    for prompt, runs in seen.items():
        problem = replayed([prompt] * len(runs), [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs])
        if problem is not None:
            outcome.fail("output_check_failed", problem)
            return
    after, _ = child.request({"op": "observe", "key": key}, protocol.load_seconds)
    changed = mismatches(expected, dict(after["observed"]))  # type: ignore[call-overload]
    if changed:
        outcome.config_match = False
        outcome.mismatches = [f"after the timed calls: {m}" for m in changed]
        outcome.fail("config_mismatch", "; ".join(outcome.mismatches))
        return
    assert paired is not None
    outcome.phases["checks"] = time.perf_counter() - clock - sum(outcome.phases.values())
    _verdict(task, paired, base_scores, sol_scores, scorer is not None, outcome, protocol.policy)


class _Invalid(Exception):
    pass


class BaselineError(Exception):
    """The baseline's process failed: the grade is the grader's error, not the solution's."""


def _ran_differently(solution: object, baseline: object) -> str | None:
    """The steps and latent sizes a solution's call ran, against the baseline's (each a (steps, sizes) pair)."""
    (steps, sizes), (base_steps, base_sizes) = solution, baseline  # type: ignore[misc]
    if steps != base_steps:
        shown = "not counted (the scheduler was replaced)" if steps == -1 else steps
        return f"steps that ran: {shown} scheduler steps (the task's: {base_steps})"
    if sizes != base_sizes:
        return f"latent size: {sizes} (the task's: {base_sizes}): a lower resolution, scaled up"
    return None


def _decided(paired: Paired, task: Task, policy: TimingPolicy) -> bool:
    low, high = paired.interval
    if task.target is None:
        return paired.half_width <= policy.target_half_width
    side_known = low > task.target or high < task.target
    if task.difficulty == "hard":  # achievement = min(1, s / target): precise below the target, decided above it
        return low >= task.target or paired.half_width <= policy.target_half_width
    return side_known


def _verdict(task: Task, paired: Paired, base_scores: list[float], sol_scores: list[float], quality: bool,
             outcome: Outcome, policy: TimingPolicy) -> None:
    outcome.pairs = paired.pairs
    outcome.actual_speedup = paired.speedup
    outcome.speedup_interval = paired.interval
    outcome.baseline_time = statistics.fmean(paired.baseline_seconds)
    outcome.accelerated_time = statistics.fmean(paired.accelerated_seconds)
    low, high = outcome.speedup_interval
    if task.target is not None and low <= task.target <= high and task.difficulty != "hard":
        outcome.borderline.append(f"speed-up interval [{low:.3g}, {high:.3g}] contains the target {task.target:g} "
                                  f"after {paired.pairs} pairs")
    if task.upper_bound is not None and low > task.upper_bound * (1 + policy.target_half_width):
        outcome.flags.append(f"review: speed-up {paired.speedup:.3g}x (interval from {low:.3g}x) is above the stored "
                             f"upper bound {task.upper_bound:g}x of this configuration")
    speed_ok = task.target is not None and paired.speedup >= task.target
    if task.target is not None:
        outcome.achievement_rate = min(1.0, paired.speedup / task.target) if task.difficulty == "hard" else None
    loss_ok: bool | None = None
    if quality and base_scores:
        outcome.quality_known = True
        outcome.baseline_score = statistics.fmean(base_scores)
        outcome.accelerated_score = statistics.fmean(sol_scores)
        estimate = paired_loss(base_scores, sol_scores)
        if estimate is None:
            outcome.fail("evaluation_error", "the baseline's CLIP score is 0: the loss is undefined")
            return
        outcome.quality_loss = estimate.loss
        outcome.quality_interval = (estimate.low, estimate.high)
        loss_ok = not reject(estimate, task.max_loss, looks=paired.pairs) and estimate.loss <= task.max_loss
        if estimate.low is not None and estimate.high is not None and estimate.low <= task.max_loss <= estimate.high:
            outcome.borderline.append(f"loss interval [{estimate.low:.3g}, {estimate.high:.3g}] contains the "
                                      f"threshold {task.max_loss:g}")
    if task.target is None:
        outcome.fail("missing_required_information", "the task has no target speed-up")
        return
    if loss_ok is False:
        outcome.fail("quality_threshold_exceeded")
    elif task.difficulty != "hard" and not speed_ok:
        outcome.fail("speedup_target_not_met")
    elif loss_ok is None:
        outcome.passed = None  # speed only: quality unknown, never "passed"
        outcome.flags.append("quality unknown (random weights or a random scorer): speed graded only")
    else:
        outcome.passed = True
    if not math.isfinite(paired.speedup):
        outcome.fail("evaluation_error", "a non-finite speed-up")
