"""The queue's claim order (storage.queue.claim_key) on a real queue, and its replay for N workers
(sweep.study.simulate) on workloads whose schedules are worked out by hand."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from storage import Repository
from storage.queue import WorkQueue
from sweep.study.catalogue import load_space
from sweep.study.simulate import SimTask, Workload, from_timeline, simulate
from sweep.study.worker import enqueue_space
from tests.conftest import write_space

ROOT = Path(__file__).resolve().parent.parent


def workload(tasks: list[tuple[int, int, str, float]], pipeline: dict[int, str], cost: dict[int, float],
             build: dict[str, float] | None = None, startup: float = 0.0) -> Workload:
    return Workload(tuple(SimTask(*t) for t in tasks), pipeline, cost, build or {p: 0.0 for p in pipeline.values()},
                    startup)


# three configurations, two on pipeline A (cheap), one on B (expensive, with a 60 s precise timing)
TAIL = workload(
    [(1, 1, "baseline", 10), (2, 1, "setting", 5), (3, 2, "baseline", 10), (4, 2, "setting", 5), (5, 3, "baseline", 10),
     (6, 3, "setting", 5), (7, 1, "precise", 5), (8, 2, "precise", 5), (9, 3, "precise", 60)],
    {1: "A", 2: "A", 3: "B"}, {1: 1.0, 2: 1.0, 3: 5.0})


def test_the_expensive_configuration_first_shortens_the_tail() -> None:
    # former: w0 b1 0-10, s1 10-15, p1 15-20, b3 20-30, s3 30-35, p3 35-95; w1 b2, s2, p2 (done at 20), then waits
    former = simulate(TAIL, 2, "former")
    assert former.makespan == 95.0
    # current: w0 b3 0-10, s3 10-15, p3 15-75; w1 b1, s1, p1 (20), b2 20-30 (same pipeline), s2, p2 (40)
    current = simulate(TAIL, 2, "current")
    assert current.makespan == 75.0
    assert [task for _, worker, task in current.timeline if worker == 0] == [5, 6, 9]
    assert current.busy == [pytest.approx(75 / 75), pytest.approx(40 / 75)]


def test_one_worker_pays_every_task_its_builds_and_its_start_up_once() -> None:
    load = workload([(1, 1, "baseline", 3), (2, 1, "setting", 1), (3, 2, "baseline", 4), (4, 2, "setting", 2)],
                    {1: "A", 2: "B"}, {1: 1.0, 2: 9.0}, {"A": 2.0, "B": 5.0}, startup=7.0)
    for order in ("former", "current"):
        run = simulate(load, 1, order)
        assert run.makespan == 7 + 2 + 5 + 3 + 1 + 4 + 2 and run.builds == 2
    # current: the expensive B first
    assert [task for _, _, task in simulate(load, 1, "current").timeline] == [3, 4, 1, 2]
    with pytest.raises(ValueError, match="order"):
        simulate(load, 1, "fastest")


def test_a_timeline_gives_back_its_tasks_seconds() -> None:
    timeline = [{"id": 1, "kind": "baseline", "base": 1, "done_s": 12.0}, {"id": 2, "kind": "setting", "base": 1, "done_s": 13.5},
                {"id": 3, "kind": "baseline", "base": 2, "done_s": 20.0}]
    load = from_timeline(timeline, {1: "A", 2: "B"}, {1: 1.0, 2: 1.0}, {"A": 2.0, "B": 4.0}, startup=7.0)
    assert [t.seconds for t in load.tasks] == [3.0, 1.5, 2.5]  # less start-up and A's build; less B's build
    assert simulate(load, 1, "former").makespan == 20.0  # the one-worker run it came from
    with pytest.raises(ValueError, match="task 1"):
        from_timeline(timeline, {1: "A", 2: "B"}, {1: 1.0, 2: 1.0}, {"A": 9.0, "B": 4.0}, startup=7.0)


def test_the_simulation_of_the_measured_two_gpu_run_is_within_ten_percent(tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "simulate_queue.py"),
                           str(ROOT / "docs" / "measurements" / "2026-11-26-h100x2-multi-gpu-run3.json"), "--out", str(out)],
                          capture_output=True, text=True, check=True)
    line = out.read_text(encoding="utf-8").splitlines()[-1]
    error = float(re.search(r"simulated [\d.]+x \(([-+][\d.]+)%\)", line).group(1))  # type: ignore[union-attr]
    assert abs(error) <= 10.0, done.stdout


SPACE = """
name = "order"
combine = false
[protocol]
prompts = "bundled"
num_prompts = 1
timing_prompts = 1
[[base]]
pipelines = ["tiny-sd-a", "tiny-sd-b"]
schedulers = ["DDIMScheduler"]
steps = [4, 8]
resolutions = [[64, 64]]
dtype = "float32"
batch_size = 1
[accelerators.deepcache]
cache_interval = [2]
cache_branch_id = [0]
"""


def test_a_worker_claims_by_the_pipeline_it_holds_then_the_most_expensive_configuration(tmp_path: Path, db_url: str) -> None:
    repo = Repository(db_url)
    env_id, added, _ = enqueue_space(repo, load_space(write_space(tmp_path, SPACE)), "cpu", max_loss=0.02, confirm_top=1)
    assert added == 4 * 2
    queue = WorkQueue(repo)
    bases = {b: repo.base_config(b) for b in range(1, 5)}
    first = queue.claim(env_id, "w1")
    assert first is not None and first.kind == "baseline" and bases[first.scope.base_config_id].steps == 8
    held = bases[first.scope.base_config_id]
    pipeline = (held.pipeline, held.model, held.weights, held.dtype)
    # another worker, holding nothing: the other 8-step configuration (the most expensive left)
    second = queue.claim(env_id, "w2")
    assert second is not None and second.kind == "baseline" and bases[second.scope.base_config_id].steps == 8
    assert bases[second.scope.base_config_id].pipeline != held.pipeline
    # the first worker, holding its pipeline: the 4-step configuration of the same pipeline, before anything else
    third = queue.claim(env_id, "w1", prefer_base_config=first.scope.base_config_id, prefer_pipeline=pipeline)
    assert third is not None and third.kind == "baseline"
    assert bases[third.scope.base_config_id].pipeline == held.pipeline and bases[third.scope.base_config_id].steps == 4
    fourth = queue.claim(env_id, "w2")
    assert fourth is not None and fourth.kind == "baseline"
    # every setting waits for its baseline, which others hold: nothing to claim, and what waits is named (the most
    # expensive first) for a worker to build ahead
    assert queue.claim(env_id, "w3") is None
    waiting = queue.waiting_base_configs(env_id)
    assert sorted(waiting) == [1, 2, 3, 4] and {bases[b].steps for b in waiting[:2]} == {8}
    repo.close()
