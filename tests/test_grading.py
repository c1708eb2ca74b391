"""`sweep evaluate` on real tiny pipelines (CPU): honest solutions graded by the task's rule, both input formats,
every planted dishonest solution in tests/solutions/ caught with its reason, and random SIGKILLs that lose at
most the evaluation in progress. A new trick is one more file in tests/solutions/ with its ``expect:`` line."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from search_space.base_config import BaseConfig
from storage import Repository
from storage.models import EvaluationRow
from sweep import app as app_layer
from sweep.fronts.cli import app

SOLUTIONS = Path(__file__).parent / "solutions"
runner = CliRunner()
FAST = dict(num_prompts=2, min_pairs=2, max_pairs=6, warmup_cap=2, request_seconds=10.0)


def expectation(path: Path) -> tuple[str, str]:
    """(failure reason or "pass", a substring of the error) from a solution's ``expect:`` line."""
    match = re.search(r"expect: (\w+)(?:: (.+?))?\"\"\"", path.read_text(encoding="utf-8").replace("\n", " "), re.DOTALL)
    assert match, f"{path.name} has no expect: line"
    return match.group(1), (match.group(2) or "").strip()


def world_readable_dir() -> Path:
    """A folder the graded child can read whichever user it runs as."""
    folder = Path(tempfile.mkdtemp(prefix="sweep-grading-test-"))
    folder.chmod(0o755)
    return folder


def make_readable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0))


@pytest.fixture(scope="module")
def pretrained(local_weights: dict[str, str]) -> Iterator[tuple[BaseConfig, Path, str]]:
    """tiny-sd-a with local "pretrained" weights and the tiny CLIP checkpoint: the quality check runs."""
    folder = world_readable_dir()
    shutil.copytree(local_weights["tiny-sd-a"], folder / "tiny-sd-a")
    shutil.copy(local_weights["clip"], folder / "tiny-clip.pt")
    make_readable(folder)
    base = BaseConfig("tiny-sd-a", str(folder / "tiny-sd-a"), "pretrained", "DDIMScheduler", 6, 64, 64, "float32", 1)
    yield base, folder, str(folder / "tiny-clip.pt")
    shutil.rmtree(folder, ignore_errors=True)


def write_solution(folder: Path, source: Path, base: BaseConfig, name: str | None = None) -> Path:
    text = source.read_text(encoding="utf-8").replace("BASE: dict = {}", f"BASE: dict = {dataclasses.asdict(base)!r}")
    path = folder / (name or source.name)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
    return path


def task_row(task_id: str, base: BaseConfig, target: float, difficulty: str = "medium",
             upper_bound: float | None = None) -> dict[str, object]:
    return {"task_id": task_id, "pipeline": base.pipeline, "scheduler": base.scheduler, "steps": base.steps,
            "difficulty": difficulty, "target": target, "sentence": "", "max_loss": 0.02, "upper_bound": upper_bound,
            "stale": False, "settings": None, "base_config": dataclasses.asdict(base), "device": "cpu"}


def grade(db: str, rows: list[dict[str, object]], solutions: dict[str, Path], folder: Path, clip: str | None,
          **protocol: object) -> app_layer.GradeResult:
    tasks, gen = folder / "tasks.json", folder / "gen.json"
    tasks.write_text(json.dumps(rows), encoding="utf-8")
    gen.write_text(json.dumps([{"prompt_id": k, "path_to_gen_code": str(v)} for k, v in solutions.items()]), encoding="utf-8")
    options = {**FAST, **protocol}
    proto = app_layer.grading_protocol("bundled", options.pop("num_prompts"), scorer="sweep-tiny-clip",  # type: ignore[arg-type]
                                       scorer_pretrained=clip or "random", **options)  # type: ignore[arg-type]
    jobs = app_layer.grading_jobs(db, tasks_file=tasks, solutions_file=gen)
    return app_layer.evaluate_solutions(db, jobs, "cpu", proto, out=folder / "out")


def by_id(result: app_layer.GradeResult) -> dict[str, dict[str, object]]:
    return {str(e["prompt_id"]): e for e in result.entries}


def test_every_planted_dishonest_solution_is_caught_with_its_reason(pretrained: tuple[BaseConfig, Path, str],
                                                                     sqlite_url: str) -> None:
    base, folder, clip = pretrained
    work = world_readable_dir()
    planted = sorted(p for p in SOLUTIONS.glob("*.py") if expectation(p)[0] != "pass")
    assert len(planted) >= 15
    solutions = {p.stem: write_solution(work, p, base) for p in planted}
    result = grade(sqlite_url, [task_row(p.stem, base, 1.5) for p in planted], solutions, work, clip)
    entries = by_id(result)
    (Path(tempfile.gettempdir()) / "sweep-planted-seconds.json").write_text(json.dumps({k: v["seconds"] for k, v in entries.items()}))
    for path in planted:
        reason, text = expectation(path)
        e = entries[path.stem]["evaluation_results"]
        assert e["passed"] is False and e["failure_reason"] == reason, (path.name, e)  # type: ignore[index]
        assert text in str(e["error"] or ""), (path.name, e)  # type: ignore[index]
    # the grader's state was out of the solution's reach
    output = entries["reads_grader_files"]["output"]
    assert "REACHED: nothing" in str(output), output
    assert result.report["summary"]["total_passed"] == 0  # type: ignore[index]
    with Repository(sqlite_url).session() as s:
        assert s.scalar(select(func.count()).select_from(EvaluationRow)) == len(planted)
    shutil.rmtree(work, ignore_errors=True)


def test_an_honest_deepcache_solution_is_graded_by_its_task(pretrained: tuple[BaseConfig, Path, str],
                                                            sqlite_url: str) -> None:
    base, folder, clip = pretrained
    work = world_readable_dir()
    honest = write_solution(work, SOLUTIONS / "honest_deepcache.py", base)
    rows = [task_row("below", base, 0.5), task_row("above", base, 50.0), task_row("hard", base, 50.0, "hard"),
            task_row("implausible", base, 0.5, upper_bound=0.8)]
    result = grade(sqlite_url, rows, dict.fromkeys(("below", "above", "hard", "implausible"), honest), work, clip)
    e = {k: v["evaluation_results"] for k, v in by_id(result).items()}
    speedup = e["below"]["actual_speedup"]  # type: ignore[index]
    assert e["below"]["config_match"] is True and e["below"]["quality_known"] is True  # type: ignore[index]
    assert e["below"]["passed"] is True and e["below"]["failure_reason"] is None, e["below"]  # type: ignore[index]
    assert speedup > 1.0 and e["below"]["speedup_interval"][0] > 0.5  # type: ignore[index, operator]
    assert e["above"]["passed"] is False and e["above"]["failure_reason"] == "speedup_target_not_met"  # type: ignore[index]
    assert e["hard"]["passed"] is True  # type: ignore[index]
    assert e["hard"]["achievement_rate"] == pytest.approx(e["hard"]["actual_speedup"] / 50.0)  # type: ignore[index, operator]
    assert any("above the stored upper bound" in f for f in e["implausible"]["flags"])  # type: ignore[index, union-attr]
    report = json.loads((work / "out" / "report.json").read_text())
    assert report["by_difficulty"]["hard"]["avg_achievement_rate"] == pytest.approx(e["hard"]["achievement_rate"])  # type: ignore[index]
    assert report["failure_analysis"]["speed_fail_count"] == 1
    # a re-run grades nothing again: every evaluation is stored under its key
    again = grade(sqlite_url, rows, dict.fromkeys(("below", "above", "hard", "implausible"), honest), work, clip)
    assert (again.graded, again.stored) == (0, 4)
    assert by_id(again)["below"]["evaluation_results"] == by_id(result)["below"]["evaluation_results"]
    # one solution against one task of the file, through the command line: found stored, graded again by nobody
    command = ["evaluate", str(honest), "--task", "hard", "--tasks", str(work / "tasks.json"), "--db", sqlite_url,
               "--device", "cpu", "--out", str(work / "single"), "--num-prompts", "2", "--min-pairs", "2", "--max-pairs",
               "6", "--scorer", "sweep-tiny-clip", "--scorer-pretrained", clip, "--format", "json"]
    single = runner.invoke(app, command)
    assert single.exit_code == 0, single.output
    first = json.loads(single.stdout)
    assert first["graded"] == 1  # its own protocol (the command line's warm-up): a new evaluation
    assert first["evaluation_results"][0]["evaluation_results"]["passed"] is True
    again_single = json.loads(runner.invoke(app, command).stdout)
    assert (again_single["graded"], again_single["stored"]) == (0, 1)
    assert again_single["evaluation_results"] == first["evaluation_results"]
    assert "--task 'nope'" in runner.invoke(app, ["evaluate", str(honest), "--task", "nope", "--tasks",
                                                  str(work / "tasks.json"), "--db", sqlite_url]).output
    # the HTTP API and the report show the stored evaluations
    import threading
    import urllib.request

    from sweep.fronts.serve import make_server

    server = make_server(sqlite_url, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/evaluations", timeout=10) as response:
            served = json.load(response)
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(r["task_id"] for r in served) == ["above", "below", "hard", "hard", "implausible"]  # two protocols
    index = app_layer.write_report(sqlite_url, work / "report", 0.02)
    page = index.read_text(encoding="utf-8")
    assert "Graded solutions" in page and "hard: 2/2 passed" in page
    shutil.rmtree(work, ignore_errors=True)


TGATE = '''"""T-GATE through its own generate call."""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}


def load_pipe(device):
    import tgate

    pipe = load_pipeline(BaseConfig(**BASE), device)
    tgate.TgatePixArtAlphaLoader(pipe)
    return pipe


def generate(pipe, prompts, generators, **call):
    return pipe.tgate(prompts, generator=generators, gate_step=2, sp_interval=3, fi_interval=1, warm_up=0, **call)
'''

GROUND_TRUTH = '''"""The unaccelerated pipeline of the task."""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}
pipe = load_pipeline(BaseConfig(**BASE), "cpu")
'''


def test_the_former_annotation_and_generated_code_files_are_read_and_written(sqlite_url: str) -> None:
    work = world_readable_dir()
    base = BaseConfig("tiny-pixart", "builtin:tiny-pixart", "random", "DPMSolverMultistepScheduler", 6, 64, 64, "float32", 1)
    (work / "gt_code").mkdir()
    (work / "gen_code").mkdir()
    make_readable(work)
    for name, text in (("gt_code/1.py", GROUND_TRUTH), ("gt_code/2.py", GROUND_TRUTH), ("gen_code/1.py", TGATE)):
        (work / name).write_text(text, encoding="utf-8")
        write_solution(work / Path(name).parent, work / name, base)
    context = "Take an PixArt-α pipeline (DPM-Solver++, 6 steps) as the baseline, and achieve a {}x speedup"
    anno = [{"prompt_id": "1", "difficulty": "easy", "prompt_context": context.format("0.2"), "path_to_gt_code": "gt_code/1.py"},
            {"prompt_id": "2", "prompt_context": context.format("1.5"), "path_to_gt_code": "gt_code/2.py"},
            {"prompt_id": "3", "difficulty": "hard", "prompt_context": "no target here", "path_to_gt_code": "gt_code/1.py"}]
    (work / "anno.json").write_text(json.dumps(anno), encoding="utf-8")
    (work / "gen.json").write_text(json.dumps([{"prompt_id": "1", "path_to_gen_code": "gen_code/1.py"},
                                               {"prompt_id": "3", "path_to_gen_code": "gen_code/1.py"},
                                               {"prompt_id": "9", "path_to_gen_code": "gen_code/9.py"}]), encoding="utf-8")
    result = runner.invoke(app, ["evaluate", "--annotations", str(work / "anno.json"), "--solutions", str(work / "gen.json"),
                                 "--db", sqlite_url, "--device", "cpu", "--out", str(work / "out"), "--prompts", "bundled",
                                 "--num-prompts", "2", "--min-pairs", "2", "--max-pairs", "6", "--scorer-pretrained", "random",
                                 "--time-limit", "60s"])
    assert result.exit_code == 0, result.output
    entries = {e["prompt_id"]: e for e in json.loads((work / "out" / "evaluation_results.json").read_text())}
    assert sorted(entries) == ["1", "2", "3", "9"]
    one = entries["1"]
    for name in ("difficulty", "gt_path", "gen_path", "prompt_context", "target_speedup", "evaluation_results",
                 "performance_details"):
        assert name in one
    r = one["evaluation_results"]
    assert {"config_match", "actual_speedup", "quality_loss", "passed", "achievement_rate", "failure_reason"} <= set(r)
    assert one["gt_path"] == "gt_code/1.py" and one["target_speedup"] == 0.2
    assert r["config_match"] is True and r["actual_speedup"] > 0.2 and r["passed"] is None, r["error"]  # speed only: never passed
    assert r["quality_known"] is False and r["failure_reason"] is None
    assert set(one["performance_details"]) == {"baseline_time", "accelerated_time", "baseline_score", "accelerated_score"}
    assert entries["2"]["evaluation_results"]["failure_reason"] == "missing_required_information"  # no solution
    assert entries["3"]["evaluation_results"]["failure_reason"] == "missing_required_information"  # no target
    assert entries["9"]["evaluation_results"]["failure_reason"] == "missing_required_information"  # no task
    report = json.loads((work / "out" / "report.json").read_text())
    assert report["summary"] == {"total_tasks": 4, "total_passed": 0, "overall_pass_rate": 0.0, "speed_only": 1,
                                 "flagged_for_review": 0}
    assert report["by_difficulty"]["easy"] == {"total": 1, "passed": 0, "pass_rate": 0.0}
    assert report["failure_analysis"]["missing_required_information_count"] == 3
    shutil.rmtree(work, ignore_errors=True)


def graded_processes() -> list[tuple[int, int]]:
    """(pid, group id) of every live process running under a graded child's group id."""
    from sweep.grading.sandbox import _IDS_FROM, _processes

    return [(pid, group) for pid, group in _processes() if group >= _IDS_FROM]


def test_a_killed_evaluate_loses_at_most_the_evaluation_in_progress(pretrained: tuple[BaseConfig, Path, str],
                                                                   db_url: str) -> None:
    base, folder, clip = pretrained
    work = world_readable_dir()
    chosen = ["honest_deepcache", "fewer_steps", "raises", "other_scheduler"]
    solutions = {n: write_solution(work, SOLUTIONS / f"{n}.py", base) for n in chosen}
    (work / "tasks.json").write_text(json.dumps([task_row(n, base, 0.5) for n in chosen]), encoding="utf-8")
    (work / "gen.json").write_text(json.dumps([{"prompt_id": k, "path_to_gen_code": str(v)} for k, v in solutions.items()]))
    command = [sys.executable, "-m", "sweep", "evaluate", "--tasks", str(work / "tasks.json"), "--solutions",
               str(work / "gen.json"), "--db", db_url, "--device", "cpu", "--out", str(work / "out"), "--num-prompts", "2",
               "--min-pairs", "2", "--max-pairs", "4", "--scorer", "sweep-tiny-clip", "--scorer-pretrained", clip,
               "--format", "json"]
    others = set(graded_processes())  # another grader's children on this machine are not this test's
    victim = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(random.uniform(12, 40))
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    # its graded children die with it (each has a group id of its own, from sandbox._IDS_FROM on)
    deadline = time.monotonic() + 10
    while (left := sorted(set(graded_processes()) - others)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"graded children outlived the grader: {left}"
    repo = Repository(db_url)
    with repo.session() as s:
        rows = list(s.scalars(select(EvaluationRow)))
        assert len(rows) <= len(chosen)
        assert all(r.result["seed"] == r.seed and "pairs" in r.result for r in rows)  # each stored one is whole
        before = len(rows)
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert finished.returncode == 0, finished.stderr[-2000:]
    with repo.session() as s:
        assert s.scalar(select(func.count()).select_from(EvaluationRow)) == len(chosen)
    data = json.loads(finished.stdout)
    assert data["report"]["summary"]["total_tasks"] == len(chosen)
    reasons = {e["prompt_id"]: e["evaluation_results"]["failure_reason"] for e in data["evaluation_results"]}
    assert reasons == {"honest_deepcache": None, "fewer_steps": "config_mismatch", "raises": "evaluation_error",
                       "other_scheduler": "config_mismatch"}, (before, reasons)
    shutil.rmtree(work, ignore_errors=True)


def test_the_baseline_is_checksummed_under_each_evaluations_key_not_at_load(
        pretrained: tuple[BaseConfig, Path, str]) -> None:
    """The load of a baseline observes classes and sizes only; each evaluation's fresh key gives its own checksum."""
    from sweep.grading.evaluate import Task, start_baseline

    base, _, _ = pretrained
    protocol = app_layer.grading_protocol("bundled", **FAST)
    baseline = start_baseline(Task("t", "medium", 1.0, base=base), "cpu", protocol)  # type: ignore[arg-type]
    try:
        assert baseline.observed["pipeline_class"] == "StableDiffusionPipeline"
        assert all("weights" not in c for c in baseline.observed["components"].values())  # type: ignore[attr-defined]
        first, _ = baseline.child.request({"op": "observe", "key": 1}, protocol.load_seconds)
        again, _ = baseline.child.request({"op": "observe", "key": 1}, protocol.load_seconds)
        other, _ = baseline.child.request({"op": "observe", "key": 2}, protocol.load_seconds)
        unet = [r["observed"]["components"]["unet"]["weights"] for r in (first, again, other)]  # type: ignore[index]
        assert unet[0] == unet[1] != unet[2]
    finally:
        baseline.child.close()


def test_a_child_pinned_to_a_core_generates_there_and_is_timed_before_its_images_travel(
        pretrained: tuple[BaseConfig, Path, str]) -> None:
    """A child can be pinned to cores (scripts/gpu_grading_placement.py compares placements); a generation's
    reply comes in two parts: the timed one, then the images."""
    from sweep.grading.sandbox import Child

    base, _, _ = pretrained
    core = max(os.sched_getaffinity(0))
    child = Child("cpu", memory_bytes=8 * 2**30, request_seconds=60.0, label="pinned", cpus=[core])
    try:
        child.request({"op": "load", "base": dataclasses.asdict(base)}, 120.0)
        reply, images = child.request({"op": "generate", "prompts": ["a red cube"], "seeds": [3], "steps": base.steps,
                                       "height": base.height, "width": base.width, "options": {}})
        assert images is not None and images.shape == (1, base.height, base.width, 3)
        assert reply["steps_ran"] == base.steps and "generated" not in reply and 0 < child.last_seconds
        again, _ = child.request({"op": "observe", "key": 1}, 60.0)  # the pipe holds nothing left over
        assert again["observed"]["pipeline_class"] == "StableDiffusionPipeline"  # type: ignore[index]
        with open(f"/proc/{child.pid}/status", encoding="ascii") as f:
            allowed = next(line.split()[1] for line in f if line.startswith("Cpus_allowed_list:"))
        assert allowed == str(core)
    finally:
        child.close()


@contextlib.contextmanager
def cpu_hogs() -> Iterator[None]:
    """A busy process per core: another tenant taking the CPU that a side's kernel launches need."""
    spin = "import ctypes, signal; ctypes.CDLL(None).prctl(1, signal.SIGKILL)\nwhile True: pass"  # dies with the test
    hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(len(os.sched_getaffinity(0)))]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_a_call_that_waited_for_a_cpu_is_timed_again_and_a_busy_machine_grades_nothing(
        pretrained: tuple[BaseConfig, Path, str], sqlite_url: str) -> None:
    """A pair whose baseline waited for a CPU held by another process says nothing (on a loaded 2-core machine an
    unaccelerated solution was once graded 5.4x): it is timed again, and a machine that stays busy fails the
    evaluation with that reason instead of a verdict."""
    from sweep.grading.evaluate import BUSY_SHARE
    from sweep.grading.sandbox import Child

    base, folder, clip = pretrained
    child = Child("cpu", memory_bytes=8 * 2**30, request_seconds=120.0, label="busy")
    try:
        child.request({"op": "load", "base": dataclasses.asdict(base)}, 120.0)
        generate = {"op": "generate", "prompts": ["a red cube"], "seeds": [3], "steps": base.steps,
                    "height": base.height, "width": base.width, "options": {}}
        child.request(generate)
        with cpu_hogs():
            child.request(generate)
            assert child.last_waited is not None and child.last_waited > BUSY_SHARE * child.last_seconds
    finally:
        child.close()

    work = world_readable_dir()
    solution = write_solution(work, SOLUTIONS / "unaccelerated.py", base)
    with cpu_hogs():
        result = grade(sqlite_url, [task_row("busy", base, 1.5)], {"busy": solution}, work, clip, request_seconds=120.0,
                       min_pairs=2, max_pairs=2)  # a busy pair past the second fails it
    e = by_id(result)["busy"]["evaluation_results"]
    assert e["passed"] is False and e["failure_reason"] == "evaluation_error", e  # type: ignore[index]
    assert "the machine is busy" in str(e["error"]), e  # type: ignore[index]
