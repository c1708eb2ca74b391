"""A study's queue replayed for N workers, without a GPU: what N GPUs would gain, under the queue's claim order and
under the order it replaced.

A :class:`Workload` is a study's tasks with the seconds each took, the pipeline each configuration needs, what a
build of each pipeline costs and what a worker spends starting (importing torch, initialising CUDA) before its first
build; :func:`from_timeline` reads one from a one-worker run's task timeline (``scripts/gpu_multi.py`` stores it),
where the tasks ran one after the other, so each task's seconds are the gaps between finishes.

:func:`simulate` replays it as the workers would run it: a setting waits for its configuration's baseline; a
configuration's precise timings wait for its last setting and for each other (one round after the other); a worker
takes the first claimable task by the order given and pays a build where the task's pipeline is not the one it
holds; with nothing claimable it waits for the next task to finish (``current`` order: building ahead the pipeline
of a configuration whose settings wait for a baseline, as ``sweep worker`` does); workers that start together share
the host's CPU while they start (``startup_contention``: the slowdown each other starting worker adds). A
configuration's precise timings are replayed one after the other, as rounds of one (``--confirm-top 1``, the
setting of the runs whose timelines exist); rounds of several would run side by side.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from storage.queue import claim_key

ORDERS = ("former", "current")
"""``former``: the configuration in hand, then baseline, setting, precise, then queue order (before issue 23);
``current``: :func:`storage.queue.claim_key` (pipeline in hand, precise first, most expensive first)."""
_FORMER_KIND = {"baseline": 0, "setting": 1, "precise": 2}


@dataclass(frozen=True)
class SimTask:
    id: int
    scope: int
    kind: str
    seconds: float


@dataclass(frozen=True)
class Workload:
    tasks: tuple[SimTask, ...]
    pipeline: Mapping[int, str]
    """Configuration → the pipeline it runs on (one build serves every scheduler and number of steps)."""
    cost: Mapping[int, float]
    """Configuration → seconds per image (the queue's cost order)."""
    build: Mapping[str, float]
    """Pipeline → seconds a worker spends building it."""
    startup: float
    """Seconds from a worker's start to its first build."""
    startup_contention: float = 0.0


@dataclass
class SimRun:
    workers: int
    order: str
    makespan: float
    busy: list[float] = field(default_factory=list)
    """Per worker: the fraction of the makespan it spent on tasks (builds and start-up excluded)."""
    builds: int = 0
    timeline: list[tuple[float, int, int]] = field(default_factory=list)
    """(finish time, worker, task id) in order of finish."""


def _key(order: str, task: SimTask, pipeline: str, cost: float, held_scope: int | None, held_pipeline: str | None) -> tuple:
    if order == "former":
        return (task.scope != held_scope, _FORMER_KIND[task.kind], task.id)
    return claim_key(task.kind, task.scope, (pipeline, "", "", ""), cost, task.id, held_base=held_scope,
                     held_pipeline=(held_pipeline, "", "", "") if held_pipeline else None)


def simulate(workload: Workload, workers: int, order: str = "current") -> SimRun:
    if order not in ORDERS:
        raise ValueError(f"order {order!r}: one of {', '.join(ORDERS)}")
    if workers < 1:
        raise ValueError("workers must be at least 1")
    tasks = sorted(workload.tasks, key=lambda t: t.id)
    by_scope: dict[int, list[SimTask]] = {}
    for t in tasks:
        by_scope.setdefault(t.scope, []).append(t)
    done_at: dict[int, float] = {}
    started: set[int] = set()
    run = SimRun(workers, order, 0.0)

    def ready_at(t: SimTask) -> float | None:
        """When ``t`` becomes claimable (None: not known yet, its prerequisites have not finished)."""
        scope = by_scope[t.scope]
        if t.kind == "baseline":
            return 0.0
        before = [s for s in scope if s.kind == "baseline"]
        if t.kind == "precise":
            before += [s for s in scope if s.kind == "setting"] + [s for s in scope if s.kind == "precise" and s.id < t.id]
        if any(s.id not in done_at for s in before):
            return None
        return max((done_at[s.id] for s in before), default=0.0)

    first = workload.startup * (1 + workload.startup_contention * (workers - 1))
    free = [(first, w) for w in range(workers)]
    heapq.heapify(free)
    held_scope: list[int | None] = [None] * workers
    held_pipe: list[str | None] = [None] * workers
    busy = [0.0] * workers
    while len(started) < len(tasks):
        now, w = heapq.heappop(free)
        claimable = [t for t in tasks if t.id not in started and (r := ready_at(t)) is not None and r <= now]
        if not claimable:
            later = [done_at[i] for i in started if done_at[i] > now]
            if order == "current":  # build ahead, as sweep worker does: the most expensive waiting configuration's
                waiting = sorted({t.scope for t in tasks if t.id not in started and t.kind == "setting"},
                                 key=lambda s: -workload.cost[s])
                if waiting and workload.pipeline[waiting[0]] != held_pipe[w]:
                    held_pipe[w], held_scope[w] = workload.pipeline[waiting[0]], None
                    run.builds += 1
                    now += workload.build[held_pipe[w]]  # type: ignore[index]
            heapq.heappush(free, (max(now, min(later)) if later else now + 1.0, w))
            continue
        task = min(claimable, key=lambda t: _key(order, t, workload.pipeline[t.scope], workload.cost[t.scope],
                                                 held_scope[w], held_pipe[w]))
        pipeline = workload.pipeline[task.scope]
        if pipeline != held_pipe[w]:
            now += workload.build[pipeline]
            run.builds += 1
        held_pipe[w], held_scope[w] = pipeline, task.scope
        started.add(task.id)
        done_at[task.id] = now + task.seconds
        busy[w] += task.seconds
        run.timeline.append((done_at[task.id], w, task.id))
        heapq.heappush(free, (done_at[task.id], w))
    run.makespan = max(done_at.values(), default=0.0)
    run.busy = [b / run.makespan if run.makespan else 0.0 for b in busy]
    run.timeline.sort()
    return run


def from_timeline(timeline: Sequence[Mapping[str, object]], pipelines: Mapping[int, str], cost: Mapping[int, float],
                  build: Mapping[str, float], startup: float, startup_contention: float = 0.0) -> Workload:
    """The workload of a one-worker run from its task timeline (``{"id", "kind", "base", "done_s"}`` in order of
    finish, times from the queue's creation): each task's seconds are the gap to the previous finish, less the
    start-up (first task) and a pipeline build where the run changed pipeline."""
    tasks = []
    previous, held = 0.0, None
    for i, entry in enumerate(timeline):
        scope, done = int(entry["base"]), float(entry["done_s"])  # type: ignore[call-overload]
        seconds = done - previous
        if i == 0:
            seconds -= startup
        if pipelines[scope] != held:
            seconds -= build[pipelines[scope]]
            held = pipelines[scope]
        if seconds < 0:
            raise ValueError(f"task {entry['id']}: {seconds:.1f} s once start-up and build are taken out")
        tasks.append(SimTask(int(entry["id"]), scope, str(entry["kind"]), seconds))  # type: ignore[call-overload]
        previous = done
    return Workload(tuple(tasks), dict(pipelines), dict(cost), dict(build), startup, startup_contention)
