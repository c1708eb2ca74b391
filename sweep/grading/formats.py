"""The grader's files: tasks in (sweep's tasks file, or the former annotation + generated-code pair), results out
(``evaluation_results.json`` in the former schema, a superset, and the report computed from it alone).

Paths inside an input file are resolved relative to that file. A task without a solution, or a solution without
a task, is reported as ``missing_required_information``, never dropped.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from search_space import defaults
from search_space.base_config import BaseConfig
from sweep.errors import UsageError
from sweep.grading.evaluate import DIFFICULTIES, Outcome, Task

TARGET_PATTERN = re.compile(r"(\d+\.?\d*)x\s+speedup")
"""The former evaluator's: the number before "x speedup" in a task's sentence."""
STEPS_PATTERN = re.compile(r"(\d+)\s+steps")


@dataclass(frozen=True)
class Job:
    """A task and the solution handed in for it (None: missing)."""

    task: Task
    solution: Path | None
    gen_path: str | None = None
    gt_path: str | None = None


def _read_list(path: Path, what: str) -> list[Mapping[str, object]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable JSON {what} file ({type(exc).__name__})") from None
    if not isinstance(data, list) or not all(isinstance(e, Mapping) for e in data):
        raise UsageError(f"{path}: a {what} file is a JSON list of objects")
    return data


def _relative(file: Path, value: object) -> Path | None:
    if not isinstance(value, str) or not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else file.parent / path


def _by_prompt_id(path: Path, what: str) -> Iterator[tuple[str, Mapping[str, object]]]:
    """Each entry of a former file with its prompt_id; an entry without one, or an id written twice, is refused."""
    seen: set[str] = set()
    for i, entry in enumerate(_read_list(path, what)):
        prompt_id = entry.get("prompt_id")
        if prompt_id is None:
            raise UsageError(f"{path}: entry {i + 1} has no prompt_id")
        if str(prompt_id) in seen:
            raise UsageError(f"{path}: prompt_id {prompt_id} appears twice")
        seen.add(str(prompt_id))
        yield str(prompt_id), entry


def read_solutions(path: Path) -> dict[str, tuple[str, Path | None]]:
    """The generated-code file: prompt_id → (the path as written, the path resolved)."""
    out: dict[str, tuple[str, Path | None]] = {}
    for prompt_id, entry in _by_prompt_id(path, "generated-code"):
        written = entry.get("path_to_gen_code")
        out[prompt_id] = (str(written) if written is not None else "", _relative(path, written))
    return out


def _difficulty(value: object, where: str) -> str:
    difficulty = "medium" if value is None else str(value)
    if difficulty not in DIFFICULTIES:
        raise UsageError(f"{where}: difficulty {difficulty!r}; valid: {', '.join(DIFFICULTIES)}")
    return difficulty


def read_annotations(path: Path, max_loss: float = defaults.MAX_LOSS) -> list[tuple[Task, str | None]]:
    """The former annotation file: each task with its ground-truth file, the target and the steps read from its
    sentence. A task whose target or steps cannot be read carries the reason (it is graded as missing)."""
    tasks = []
    for prompt_id, entry in _by_prompt_id(path, "annotation"):
        context = str(entry.get("prompt_context") or "")
        target_match, steps_match = TARGET_PATTERN.search(context), STEPS_PATTERN.search(context)
        gt_written = entry.get("path_to_gt_code")
        gt = _relative(path, gt_written)
        problem = None
        if target_match is None:
            problem = "no target in prompt_context (\"...achieve a 8.5x speedup...\"): the former script assumed 10.0"
        elif steps_match is None:
            problem = "no number of steps in prompt_context (\"(DDIM, 50 steps)\")"
        elif gt is None or not gt.is_file():
            problem = f"ground-truth file {gt_written!r} not found"
        target = float(target_match.group(1)) if target_match else None
        task = Task(str(prompt_id), _difficulty(entry.get("difficulty"), f"{path}: entry {prompt_id}"), target, max_loss,
                    gt_path=gt if gt is not None and gt.is_file() else None,
                    steps=int(steps_match.group(1)) if steps_match else None, prompt_context=context, problem=problem)
        tasks.append((task, str(gt_written) if gt_written is not None else None))
    return tasks


def task_from_row(row: Mapping[str, object], where: str) -> Task:
    """A task as ``sweep targets`` writes or stores it."""
    try:
        base_fields = row.get("base_config")
        if isinstance(base_fields, Mapping):
            base = BaseConfig(**base_fields)  # type: ignore[arg-type]
        else:  # a tasks file written before base_config was exported: the pipeline's defaults
            from sweep.pipelines.registry import PIPELINES, canonical_alias

            info = PIPELINES[canonical_alias(str(row["pipeline"]))]
            base = BaseConfig(info.alias, info.default_model, info.weights[0], str(row["scheduler"]), int(row["steps"]),  # type: ignore[call-overload]
                              *info.resolution, "float16", 1)
        target = float(row["target"])  # type: ignore[arg-type]
        max_loss = float(row.get("max_loss", defaults.MAX_LOSS))  # type: ignore[arg-type]
        upper = row.get("upper_bound")
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{where}: not a task row of `sweep targets` ({type(exc).__name__}: {exc})") from None
    return Task(str(row["task_id"]), _difficulty(row.get("difficulty"), where), target, max_loss, base=base,
                prompt_context=str(row.get("sentence", "")), target_environment=row.get("device") or row.get("environment"),  # type: ignore[arg-type]
                upper_bound=float(upper) if isinstance(upper, (int, float)) else None)


def read_tasks(path: Path) -> list[Task]:
    """A tasks file written by ``sweep targets --out FILE.json``."""
    tasks = [task_from_row(row, f"{path}: row {i + 1}") for i, row in enumerate(_read_list(path, "tasks"))]
    ids = Counter(t.task_id for t in tasks)
    twice = [i for i, n in ids.items() if n > 1]
    if twice:
        raise UsageError(f"{path}: task_id {twice[0]} appears twice")
    return tasks


def pair_jobs(tasks: Sequence[tuple[Task, str | None]], solutions: Mapping[str, tuple[str, Path | None]]) -> list[Job]:
    """Each task with its solution; tasks without one and solutions without a task become missing jobs."""
    jobs = []
    for task, gt_written in tasks:
        written, path = solutions.get(task.task_id, (None, None))
        problem = task.problem
        if written is None:
            problem = problem or "no solution was handed in for this task"
        elif path is None or not path.is_file():
            problem = problem or f"solution file {written!r} not found"
        jobs.append(Job(_with_problem(task, problem), path if problem is None else None, written, gt_written))
    known = {t.task_id for t, _ in tasks}
    for prompt_id, (written, _) in solutions.items():
        if prompt_id not in known:
            jobs.append(Job(Task(prompt_id, "medium", None, problem="a solution for a task that is not in the task file"),
                            None, written))
    return jobs


def _with_problem(task: Task, problem: str | None) -> Task:
    from dataclasses import replace

    return task if problem == task.problem else replace(task, problem=problem)


# -- outputs ----------------------------------------------------------------------------------------------------

def result_entry(job: Job, outcome: Outcome, *, environment: str, solution_sha256: str | None) -> dict[str, object]:
    """One task's entry of ``evaluation_results.json`` (the former fields first, then sweep's)."""
    task = job.task
    return {
        "prompt_id": task.task_id, "difficulty": task.difficulty, "gt_path": job.gt_path, "gen_path": job.gen_path,
        "prompt_context": task.prompt_context, "target_speedup": task.target,
        "evaluation_results": {
            "config_match": outcome.config_match, "actual_speedup": outcome.actual_speedup,
            "quality_loss": outcome.quality_loss, "passed": outcome.passed, "achievement_rate": outcome.achievement_rate,
            "failure_reason": outcome.failure_reason, "error": outcome.error,
            "speedup_interval": list(outcome.speedup_interval) if outcome.speedup_interval else None,
            "quality_interval": list(outcome.quality_interval) if outcome.quality_interval else None,
            "quality_known": outcome.quality_known, "borderline": outcome.borderline, "flags": outcome.flags,
            "mismatches": outcome.mismatches, "pairs": outcome.pairs,
        },
        "performance_details": {"baseline_time": outcome.baseline_time, "accelerated_time": outcome.accelerated_time,
                                "baseline_score": outcome.baseline_score, "accelerated_score": outcome.accelerated_score},
        "environment": environment, "target_environment": task.target_environment,
        "environment_note": _environment_note(environment, task.target_environment),
        "seed": outcome.seed, "solution_sha256": solution_sha256, "seconds": round(outcome.seconds, 3),
        "output": outcome.output,
    }


def _environment_note(measured: str, target: str | None) -> str | None:
    if target is None:
        return "the target's environment is not recorded"
    if target.lower() not in measured.lower():
        return f"measured on {measured}; the target was set on {target}: speed-ups differ between machines"
    return None


def report(entries: Sequence[Mapping[str, object]]) -> dict[str, object]:
    """The former report, from ``evaluation_results.json`` alone."""
    def results(e: Mapping[str, object]) -> Mapping[str, object]:
        return e["evaluation_results"]  # type: ignore[return-value]

    by: dict[str, dict[str, object]] = {}
    for difficulty in DIFFICULTIES:
        group = [e for e in entries if e["difficulty"] == difficulty]
        passed = sum(1 for e in group if results(e)["passed"] is True)
        row: dict[str, object] = {"total": len(group), "passed": passed, "pass_rate": passed / len(group) if group else 0.0}
        if difficulty == "hard":
            rates = [float(results(e)["achievement_rate"]) for e in group  # type: ignore[arg-type]
                     if results(e)["passed"] is True and results(e)["achievement_rate"] is not None]
            row["avg_achievement_rate"] = sum(rates) / len(rates) if rates else 0.0
        by[difficulty] = row
    reasons = Counter(str(results(e)["failure_reason"]) for e in entries if results(e)["failure_reason"])
    total_passed = sum(1 for e in entries if results(e)["passed"] is True)
    return {
        "summary": {"total_tasks": len(entries), "total_passed": total_passed,
                    "overall_pass_rate": total_passed / len(entries) if entries else 0.0,
                    "speed_only": sum(1 for e in entries if results(e)["passed"] is None),
                    "flagged_for_review": sum(1 for e in entries if results(e)["flags"] and any(
                        str(f).startswith("review") for f in results(e)["flags"]))},  # type: ignore[union-attr]
        "by_difficulty": by,
        "failure_analysis": {"config_mismatch_count": reasons["config_mismatch"],
                             "speed_fail_count": reasons["speedup_target_not_met"],
                             "quality_fail_count": reasons["quality_threshold_exceeded"],
                             "evaluation_error_count": reasons["evaluation_error"],
                             "output_check_failed_count": reasons["output_check_failed"],
                             "missing_required_information_count": reasons["missing_required_information"]},
        "task_details": list(entries),
    }


def write_json(path: Path, data: object) -> None:
    try:
        path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
