"""The application layer: one function per use case, plain arguments in, plain data out.

The command line (sweep/fronts/cli.py), the HTTP API (sweep/fronts/serve.py) and the scripts call these functions; none of
them opens a database session, spawns a process or builds a pipeline itself. A database is named by its URL;
each URL's Repository is opened once per process. Mistakes raise a UsageError (or another SweepError) whose
message is one line for the user.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from search_space import defaults
from search_space.spec import Space
from storage import Repository
from sweep.errors import UsageError
from sweep.inputs import check_device, check_max_loss, check_target
from sweep.study import catalogue

if TYPE_CHECKING:
    from sweep.progress import ProgressSink
    from sweep.study.runner import RunSummary, SearchOptions
    from sweep.study.worker import WorkerSummary

Row = dict[str, object]


# -- inputs ------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def repository(db: str) -> Repository:
    """The database at URL ``db`` (created or upgraded to this sweep's schema on first use)."""
    return Repository(db)


def resolve_device(device: str | None) -> str:
    """``device``, checked; by default cuda where available, else cpu."""
    from sweep.study.runner import default_device

    return check_device(default_device() if device is None else device)


def quiet_libraries() -> None:
    """Library warnings only (diffusers and transformers are chatty), before a pipeline is built."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    import sweep._compat  # noqa: F401

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()


def load_space(space_file: Path | None, preset: str | None, prompts: str | None = None,
               weights: str | None = None) -> Space:
    """A space file or a shipped preset (exactly one), with its prompt source replaced by ``prompts`` and every
    base configuration's weights by ``weights`` (``random``: speed only, without hub access)."""
    if (space_file is None) == (preset is None):
        raise UsageError("give either a SPACE_FILE or --preset NAME (one of them)")
    space = catalogue.load_preset(preset) if preset is not None else catalogue.load_space(space_file)  # type: ignore[arg-type]
    if prompts is not None:
        space = dataclasses.replace(space, protocol=dataclasses.replace(space.protocol, prompts=prompts))
    if weights is not None:
        space = catalogue.with_weights(space, weights)
    return space


def parse_factors(text: str) -> dict[str, float]:
    """``easy=0.8,medium=1.0,hard=1.2`` → {difficulty: factor}; a clear error otherwise."""
    factors: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            factor = float(value)
        except ValueError:
            factor = math.nan
        if not sep or not name.strip() or not (factor > 0 and math.isfinite(factor)):
            raise UsageError(f"--factors {text!r}: expected name=positive number pairs, e.g. easy=0.8,medium=1.0,hard=1.2")
        factors[name.strip()] = factor
    return factors


def environments(db: str, environment: str | None) -> list[int] | None:
    """The environment ids an ``--environment`` filter names (None: every environment)."""
    if environment is None:
        return None
    found = repository(db).environment_ids(environment)
    if not found:
        raise UsageError(f"--environment {environment!r} matches no stored environment (give an id or part of a device name)")
    return found


# -- measuring ---------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    environment_id: int
    speed_config_ids: list[int]
    summary: RunSummary | None = None
    """One process's account of what it measured (None when workers did the work)."""
    worker_exit_codes: list[int] = dataclasses.field(default_factory=list)
    queued: int = 0
    """Tasks the run queued (workers only)."""


def run_space(
    db: str, space: Space, device: str, search: SearchOptions, *, confirm_top: int = defaults.CONFIRM_TOP,
    progress: ProgressSink | None = None, canary: bool | None = None, shared_estimates: bool = True,
) -> RunResult:
    """Measure, in this process, what the space's upper bounds need and is not stored yet (first re-timing a
    stored speed baseline where the environment holds one: ``canary``; None: on a GPU, off on a CPU)."""
    from sweep.study.runner import Runner

    quiet_libraries()
    summary = Runner(repository(db), device, progress).run(
        space, search=search, confirm_top=confirm_top, canary=canary, shared_estimates=shared_estimates)
    assert summary.environment_id is not None
    return RunResult(summary.environment_id, summary.speed_config_ids, summary)


def run_with_workers(
    db: str, space: Space, devices: list[str], *, max_loss: float = defaults.MAX_LOSS,
    confirm_top: int = defaults.CONFIRM_TOP, lease: float = defaults.LEASE_SECONDS,
    on_queued: Callable[[int], None] | None = None, on_counts: Callable[[Mapping[str, int]], None] | None = None,
    poll_seconds: float = 1.0,
) -> RunResult:
    """Queue the space in the database, run one ``sweep worker`` process per device on this machine, and follow
    the queue until they exit. ``on_queued`` hears how many tasks were queued, ``on_counts`` the queue's counts
    by status every ``poll_seconds``. Unfinished tasks stay queued for the next worker."""
    from storage.queue import WorkQueue
    from sweep.study.worker import THREADS_VARIABLE, apply_cpu_threads, cpu_threads, enqueue_space, spawn_workers

    for device in devices:
        check_device(device)
    quiet_libraries()
    threads = cpu_threads(devices)
    if threads is not None:  # the environment (and its key) is the workers': same thread count here
        os.environ[THREADS_VARIABLE] = str(threads)
        apply_cpu_threads()
    repo = repository(db)
    env_id, added, speed_ids = enqueue_space(repo, space, devices[0], max_loss=max_loss, confirm_top=confirm_top)
    if on_queued is not None:
        on_queued(added)
    queue = WorkQueue(repo)
    if queue.outstanding(env_id) == 0:  # everything stored, nothing leased: a worker would start only to stop
        return RunResult(env_id, speed_ids, None, [], added)
    processes = spawn_workers(db, devices, lease)
    while any(p.poll() is None for p in processes):
        if on_counts is not None:
            on_counts(queue.counts(env_id))
        time.sleep(poll_seconds)
    return RunResult(env_id, speed_ids, None, [int(p.returncode) for p in processes], added)


def queue_space(db: str, space: Space, device: str | None, *, max_loss: float = defaults.MAX_LOSS,
                confirm_top: int = defaults.CONFIRM_TOP) -> tuple[str, int, int]:
    """Queue what is missing of ``space`` for the environment of ``device`` on this machine, and start no worker
    (a cluster's workers take the tasks: ``sweep worker``). Safe to run from every worker at once: a task is queued
    once. (device, environment id, tasks added)."""
    from sweep.study.worker import apply_cpu_threads, enqueue_space

    check_max_loss(max_loss)
    quiet_libraries()
    apply_cpu_threads()
    device = resolve_device(device)
    env_id, added, _ = enqueue_space(repository(db), space, device, max_loss=max_loss, confirm_top=confirm_top)
    return device, env_id, added


def run_worker(db: str, device: str | None, lease: float = defaults.LEASE_SECONDS) -> tuple[str, WorkerSummary]:
    """Take queued tasks of this machine's environment until none is left anywhere: (device, summary)."""
    from sweep.study.worker import Worker, apply_cpu_threads

    repo = repository(db)
    quiet_libraries()
    apply_cpu_threads()
    device = resolve_device(device)
    return device, Worker(repo, device, lease_seconds=lease).run()


# -- reading results -----------------------------------------------------------------------------------------------


def upper_bounds(
    db: str, max_loss: float = defaults.MAX_LOSS, *, environment: str | None = None,
    environment_ids: list[int] | None = None, speed_config_ids: list[int] | None = None, speed_only: bool = False,
    weight_dependent: bool = False,
) -> list[Row]:
    """Per base configuration and environment: the upper bound (speed joined with quality) where quality is
    known, else the speed map; ``environment`` filters by id or device name, ``environment_ids`` by id."""
    check_max_loss(max_loss)
    ids = environment_ids if environment_ids is not None else environments(db, environment)
    bounds = repository(db).bounds.rows(max_loss, environment_ids=ids, speed_config_ids=speed_config_ids,
                                        speed_only=speed_only, weight_dependent=weight_dependent)
    return [b.as_row() for b in bounds]


def reaching(
    db: str, target: float, max_loss: float = defaults.MAX_LOSS, *, environment: str | None = None,
    weight_dependent: bool = False,
) -> list[Row]:
    """Per base configuration with known quality: the setting reaching ``target`` with the least loss."""
    check_max_loss(max_loss)
    check_target(target)
    return repository(db).bounds.by_target(target, max_loss, environments(db, environment), weight_dependent=weight_dependent)


def set_targets(
    db: str, factors: Mapping[str, float], max_loss: float = defaults.MAX_LOSS, *, refresh: bool = False,
) -> list[Row]:
    """Targets for tasks from the precise upper bounds with known quality; every stored target at ``max_loss``."""
    check_max_loss(max_loss)
    return repository(db).targets.set_targets(factors, max_loss, refresh=refresh)


def stored_targets(db: str, max_loss: float | None = None) -> list[Row]:
    if max_loss is not None:
        check_max_loss(max_loss)
    return repository(db).targets.targets(max_loss)


TASK_FIELDS = ("task_id", "pipeline", "scheduler", "steps", "difficulty", "target", "sentence", "max_loss",
               "upper_bound", "stale", "settings", "base_config", "device")


def check_tasks_file(out: Path) -> None:
    if out.suffix.lower() not in (".json", ".csv"):
        raise UsageError(f"--out {out}: the export is .json or .csv")


def write_tasks(out: Path, rows: list[Row]) -> None:
    """One row per task, as JSON or CSV by the file's suffix."""
    check_tasks_file(out)
    if out.suffix.lower() == ".json":
        text = json.dumps([{k: r[k] for k in TASK_FIELDS} for r in rows], indent=2) + "\n"
    else:
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=TASK_FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({**{k: r[k] for k in TASK_FIELDS}, "settings": json.dumps(r["settings"]) if r["settings"] else "",
                             "base_config": json.dumps(r["base_config"])})
        text = buffer.getvalue()
    try:
        out.write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write ({exc.strerror})") from None


def status(db: str) -> Row:
    """Stored base configurations, speed and quality records by status, and queued tasks."""
    return repository(db).status()


def export_legacy(db: str, path: Path, max_losses: list[float] | None = None) -> int:
    """Upper bounds with known quality, and targets, in the legacy search_params.json format: entries written."""
    from sweep.study import legacy

    losses = max_losses or [defaults.MAX_LOSS]
    for loss in losses:
        check_max_loss(loss)
    return legacy.export_legacy(repository(db), path, losses)


def import_legacy(db: str, path: Path) -> tuple[int, int]:
    """A legacy search_params.json, validated whole and stored in one transaction: (settings, targets)."""
    from sweep.study import legacy

    if not path.is_file():
        raise UsageError(f"--legacy {path}: no such file")
    return legacy.import_legacy(repository(db), path)


def write_report(db: str, out: Path, max_loss: float = defaults.MAX_LOSS) -> Path:
    """Scatter plots with Pareto fronts, a heat map of upper bounds and index.html: the page's path."""
    from sweep.reporting import report

    check_max_loss(max_loss)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder")
    return report.write_report(repository(db), out, max_loss)


def schema_upgrade(db: str) -> tuple[str | None, str]:
    """Apply the migrations the database lacks: (revision before, revision now)."""
    from storage.engine import open_engine
    from storage.schema import head, upgrade

    before, now = upgrade(open_engine(db), url=db)  # a damaged schema is refused, never upgraded over
    return before, now or head()


def schema_current(db: str) -> Row:
    """The database's schema revision and this sweep's newest; a damaged schema raises a StorageError."""
    from storage.engine import open_engine
    from storage.schema import current, head

    return {"database": current(open_engine(db), db), "sweep": head()}


def schema_check(db: str) -> Row:
    """The database's schema checked against sweep's models, changing nothing: its revision, this sweep's newest,
    and ``state`` (ok, older: needs ``sweep db upgrade``, empty: no sweep schema yet); the damage raises a
    StorageError naming it (tables, columns, their types, indexes, unique and foreign-key constraints)."""
    from storage.engine import open_engine
    from storage.schema import check, head

    found = {"database": check(open_engine(db), db), "sweep": head()}
    state = "ok" if found["database"] == found["sweep"] else "empty" if found["database"] is None else "older"
    return {**found, "state": state}


# -- what sweep knows ------------------------------------------------------------------------------------------------


def space_rows(space: Space) -> list[Row]:
    """One row per base configuration: its fields, key, number of accelerated settings and notes."""
    return [
        {**dataclasses.asdict(e.base), "settings": len(e.settings) - 1, "key": e.base.key, "notes": list(e.notes)}
        for e in space.entries
    ]


ESTIMATE_WARMUP_CALLS = 2
"""Warm-up calls per pipeline a price counts (two runs that agree end a warm-up; most end there)."""
ESTIMATE_FIRST_HALF_WIDTH = 0.06
"""A first estimate's own relative half-width a price assumes (the median measured on a quiet H100 at 4 timing prompts,
docs/measurements/2026-12-06-h100-quiet.md); a checked estimate adds ``DRIFT_TOLERANCE``, a shared one
``SHARED_MARGIN``. Settings whose intervals of that width would reach the fastest one's are priced as contenders."""


@dataclass(frozen=True)
class StudyPrice:
    """The generation a row's speed study is priced at, as the runner will measure it: images of each part, and
    seconds from the speed model's per-image predictions."""

    seconds: float
    baseline_images: int
    estimate_images: int
    precise_images: int


def price_study(base_s: float, estimated: Sequence[float], every: Sequence[float], *, images: int, batch: int,
                checked: bool, quality: bool, contenders: int, min_pairs: int, half_width: float) -> StudyPrice:
    """The generation of one row's speed study, from predicted seconds per image of its baseline (``base_s``), of the
    settings whose first estimates it measures (``estimated``; a setting shared from a row of another scheduler
    with the same denoiser calls costs none) and of all its settings (``every``). A price: it assumes no drift, every
    warm-up ended in ``ESTIMATE_WARMUP_CALLS`` runs and every precise timing in ``max(min_pairs, batches)`` rounds.

    - the speed baseline: its warm-up, then one pass of the timing set (none where the row measures ``quality``: the
      quality baseline's timed batches serve, and the quality pass is not priced here);
    - each first estimate: a ``checked`` pass where the row checks (speed only, several timing batches: one warm-up
      run, the setting over the timing set, the baseline over one batch untimed then timed); else a paired pass (one
      warm-up run, none after a quality pass; each batch by the baseline and by the setting);
    - precise timing: the contenders, settings of ``every`` whose first estimates' intervals (``half_width``) would
      reach the fastest one's, in groups of ``contenders`` (the runner's rounds), each group's settings warmed up,
      then one baseline batch and one batch of each setting per round."""
    calls = -(-images // batch)
    warm = ESTIMATE_WARMUP_CALLS * batch
    baseline_images = 0 if quality else images + warm
    seconds = baseline_images * base_s
    estimate_images = 0
    for t in estimated:
        if checked:
            seconds += (batch + images) * t + 2 * batch * base_s
            estimate_images += batch + images + 2 * batch
        else:
            own_warm = 0 if quality else batch
            seconds += own_warm * t + images * (base_s + t)
            estimate_images += own_warm + 2 * images
    reach = (1 + half_width) / (1 - half_width)
    top = [t for t in sorted(every) if t <= min(every) * reach] if every and contenders else []
    rounds = max(min_pairs, calls)
    precise_images = 0
    for start in range(0, len(top), contenders or 1):
        group = top[start:start + contenders]
        seconds += rounds * batch * base_s + sum(warm * t + rounds * batch * t for t in group)
        precise_images += rounds * batch * (1 + len(group)) + warm * len(group)
    return StudyPrice(seconds, baseline_images, estimate_images, precise_images)


def estimate_space(space: Space, db: str, environment: str | None = None,
                   confirm_top: int = defaults.CONFIRM_TOP) -> list[Row]:
    """A price for each base configuration of ``space`` in each measured environment, from the speed models of
    what is stored there (:mod:`sweep.measurement.speed_model`): predicted seconds per image of the baseline
    and of each setting, the fastest predicted setting, and the predicted generation seconds of its speed study
    as one process's runner measures it (:func:`price_study`: a row after another of the same pipeline, shape and
    denoiser calls, or beside one stored, shares its first estimates; a speed-only row of several timing batches
    checks them, else pairs them; the predicted contenders timed precisely together, ``confirm_top`` at a time).
    Queue workers pair more and time one setting at a time: they cost more than this price. Rows with no model in an
    environment say so. Each stored setting of the row is listed with its measured time beside the prediction made
    without it (leave-one-out). Predictions, never measurements."""
    from search_space.setting import AccelSetting
    from storage.measurements import real_quality
    from sweep.accelerators import describe
    from sweep.measurement.protocol import QualityProtocol
    from sweep.measurement.speed_model import SpeedModel, features
    from sweep.measurement.speed_pass import MEASURED_SOURCES
    from sweep.pipelines.loader import denoiser_calls

    ids = environments(db, environment)
    repo = repository(db)
    observations = repo.measurements.speed_observations(ids)
    model = SpeedModel(observations)
    known = sorted({o.environment_id for o in observations}) if ids is None else ids
    devices = repo.environment_devices()
    p = space.protocol
    scorer = QualityProtocol("", (), 0, p.scorer, p.scorer_pretrained).scorer
    images = min(p.timing_prompts, p.num_prompts)
    rows: list[Row] = []
    earlier: dict[tuple[object, ...], set[str]] = {}
    """The settings of the rows before this one, by (pipeline, steps, shape, dtype, batch, denoiser calls): a row that
    repeats them shares their first estimates (as ``ScopeRun.shared_estimate`` does, once they are measured)."""
    calls_of = functools.cache(denoiser_calls)
    for entry in space.entries:
        b = entry.base
        same_calls = (b.pipeline, b.steps, b.height, b.width, b.dtype, b.batch_size,
                      calls_of(b.pipeline, b.scheduler, b.steps))
        lent_here = set(earlier.get(same_calls, ())) if confirm_top > 0 else set()
        earlier.setdefault(same_calls, set()).update(s.key for s in entry.settings[1:])
        quality = real_quality(b.weights, scorer)
        checked = not quality and -(-images // b.batch_size) >= 2
        for env in known or [None]:
            row: Row = {"pipeline": b.pipeline, "scheduler": b.scheduler, "steps": b.steps, "height": b.height,
                        "width": b.width, "environment": env, "device": devices.get(env) if env else None,
                        "settings": len(entry.settings) - 1}
            family = (env, b.pipeline, b.height, b.width, b.dtype, b.batch_size) if env is not None else None
            base_s = model.predict(family, b.scheduler, b.steps, entry.settings[0]) if family else None  # type: ignore[arg-type]
            if base_s is None:
                rows.append({**row, "predicted": 0, "baseline_s": None, "fastest": None, "fastest_speedup": None,
                             "study_s": None, "note": "no model yet: measure this row's baseline (and a setting of "
                                                      "each method) in this environment first"})
                continue
            times = {s: model.predict(family, b.scheduler, b.steps, s) for s in entry.settings[1:]}  # type: ignore[arg-type]
            predicted = {s: t for s, t in times.items() if t is not None}
            # shared: measured by an earlier row of this space, or stored from a row of another scheduler with the same
            # denoiser calls in this environment (a measured estimate: the speed model's observations), for a setting
            # whose work the speed model counts (what ScopeRun.shared_estimate asks)
            stored = {AccelSetting.of(o.settings).key for o in observations
                      if o.family == family and o.steps == b.steps and o.scheduler != b.scheduler
                      and o.first_source in MEASURED_SOURCES
                      and calls_of(b.pipeline, o.scheduler, b.steps) == same_calls[-1]} if confirm_top > 0 else set()
            lent = {s.key for s in predicted if s.key in lent_here | stored and features(b.scheduler, b.steps, s)}
            estimated = [t for s, t in predicted.items() if s.key not in lent]
            price = price_study(base_s, estimated, list(predicted.values()), images=images, batch=b.batch_size,
                                checked=checked, quality=quality, contenders=confirm_top, min_pairs=p.min_pairs,
                                half_width=ESTIMATE_FIRST_HALF_WIDTH + defaults.DRIFT_TOLERANCE * checked
                                + defaults.SHARED_MARGIN * bool(lent))
            how = "checked" if checked else "paired"
            fastest = min(predicted, key=predicted.__getitem__) if predicted else None
            mine = [o for o in observations if o.family == family and o.scheduler == b.scheduler and o.steps == b.steps]
            measured = [o for o in mine if o.settings]
            stored_base = next((o.time for o in reversed(mine) if not o.settings), None)
            checks = [{"setting": describe(AccelSetting.of(o.settings)), "measured_s": o.time, "kind": o.kind,
                       "predicted_s": model.leave_one_out(o)} for o in measured]
            errors = [abs(c["predicted_s"] / c["measured_s"] - 1) for c in checks if c["predicted_s"]]  # type: ignore[operator]
            rows.append({**row, "predicted": len(predicted), "baseline_s": base_s, "measured_baseline_s": stored_base,
                         "fastest": describe(fastest) if fastest else None,
                         "fastest_speedup": base_s / predicted[fastest] if fastest else None,
                         "study_s": price.seconds,
                         "study_images": {"baseline": price.baseline_images, "first_estimates": price.estimate_images,
                                          "precise": price.precise_images},
                         "first_estimates": (how if not lent else "shared" if not estimated
                                             else f"{len(lent)} shared, {len(estimated)} {how}"),
                         "predictions": {describe(k): v for k, v in times.items()},
                         "stored_checked": len(errors),
                         "median_error": sorted(errors)[len(errors) // 2] if errors else None, "checks": checks,
                         "note": "" if len(predicted) == len(times) else
                         f"{len(times) - len(predicted)} without a prediction"})
    return rows


def accelerator_rows() -> list[Row]:
    """The installed acceleration methods: parameters, support, weight dependence and package versions."""
    from sweep.accelerators import ACCELERATORS
    from sweep.measurement.environment import package_versions

    return [{
        "name": cls.name, "description": cls.description, "applies_to": cls.describe_support(),
        "denoisers": sorted(cls.denoisers), "pipeline_classes": sorted(cls.pipeline_classes or []),
        "speed_depends_on_weights": cls.speed_depends_on_weights,
        "combines_with_own_loader": sorted(cls.absorbs), "excludes": sorted(cls.excludes),
        "packages": package_versions(cls.packages),
        "params": [{"name": p.name, "type": p.kind.__name__, "default": p.default, "valid": p.describe_valid(),
                    "aggressive": {1: "larger", -1: "smaller", 0: None}[p.aggressive], "help": p.help}
                   for p in cls.params],
    } for cls in ACCELERATORS.values()]


def pipeline_rows() -> list[Row]:
    from sweep.pipelines.registry import PIPELINES

    return [
        {"alias": i.alias, "pipeline_class": i.pipeline_class, "default_model": i.default_model,
         "denoiser": i.denoiser, "resolution": list(i.resolution), "weights": list(i.weights),
         "description": i.description}
        for i in PIPELINES.values()
    ]


def build_pipeline(
    alias: str, weights: str = "random", *, model: str | None = None, device: str = "meta", dtype: str = "float16",
) -> tuple[str, list[Row]]:
    """Construct a pipeline alias (``meta``: the architecture without allocating weights) with the model's own
    scheduler, and count each component's parameters: (canonical alias, rows with a total last)."""
    from search_space.base_config import DTYPES
    from sweep.pipelines.loader import build_random, load_pretrained
    from sweep.pipelines.registry import PIPELINES, canonical_alias

    canonical = canonical_alias(alias)
    if canonical not in PIPELINES:
        raise UsageError(f"unknown pipeline {alias!r}; valid: {', '.join(PIPELINES)}")
    info = PIPELINES[canonical]
    if weights not in info.weights:
        raise UsageError(f"--weights {weights!r} for {canonical}; valid: {', '.join(info.weights)}")
    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    if weights == "pretrained" and device == "meta":
        raise UsageError("pretrained weights need a real device: add --device cpu or --device cuda")
    check_device(device, allow_meta=True)
    quiet_libraries()
    if weights == "random":
        pipe = build_random(info, device, dtype)
    else:
        pipe = load_pretrained(info, model or info.default_model, device, dtype)
    rows: list[Row] = [
        {"component": name, "class": type(module).__name__, "parameters": sum(p.numel() for p in module.parameters())}
        for name, module in sorted(pipe.components.items()) if hasattr(module, "parameters")
    ]
    rows.append({"component": "total", "class": info.pipeline_class,
                 "parameters": sum(int(r["parameters"]) for r in rows)})  # type: ignore[call-overload]
    return canonical, rows


# -- grading solutions -------------------------------------------------------------------------------------------


@dataclass
class GradeResult:
    entries: list[Row]
    """``evaluation_results.json``: one entry per task."""
    report: Row
    """The report computed from the entries alone."""
    graded: int
    stored: int
    environment: str
    written: list[Path] = dataclasses.field(default_factory=list)


def grading_protocol(
    prompts: str = defaults.PROMPTS, num_prompts: int = defaults.GRADE_PROMPTS, *, scorer: str = defaults.SCORER,
    scorer_pretrained: str = defaults.SCORER_PRETRAINED, min_pairs: int = defaults.GRADE_MIN_PAIRS,
    max_pairs: int = defaults.GRADE_MAX_PAIRS, request_seconds: float = defaults.GRADE_REQUEST_SECONDS,
    memory_gib: float = defaults.GRADE_MEMORY_GIB, warmup_cap: int = defaults.WARMUP_CAP,
) -> object:
    """The grading protocol: its prompts read now (a clear error when they cannot be), timing policy, limits."""
    from sweep.grading.evaluate import GradingProtocol
    from sweep.measurement.prompts import load_prompts
    from sweep.measurement.stats import TimingPolicy

    if num_prompts < 1 or min_pairs < 1 or max_pairs < min_pairs:
        raise UsageError(f"--num-prompts ≥ 1 and 1 ≤ --min-pairs ≤ --max-pairs, got {num_prompts}, {min_pairs}, {max_pairs}")
    if not (request_seconds > 0 and memory_gib > 0 and math.isfinite(request_seconds) and math.isfinite(memory_gib)):
        raise UsageError("--time-limit and --memory-limit must be positive")
    return GradingProtocol(tuple(load_prompts(prompts, num_prompts)), prompts, scorer, scorer_pretrained,
                           TimingPolicy(min_pairs=min_pairs, max_pairs=max_pairs, warmup_cap=warmup_cap), request_seconds=request_seconds,
                           load_seconds=max(request_seconds, defaults.GRADE_LOAD_SECONDS),
                           memory_bytes=int(memory_gib * 2**30))


def grading_jobs(
    db: str, *, solution: Path | None = None, task_id: str | None = None, tasks_file: Path | None = None,
    annotations: Path | None = None, solutions_file: Path | None = None, max_loss: float = defaults.MAX_LOSS,
) -> list[object]:
    """The jobs one `sweep evaluate` names: FILE with --task (from --tasks or the database's targets), --tasks
    with --solutions, or the former --annotations with --solutions."""
    from sweep.grading import formats

    check_max_loss(max_loss)
    if solution is not None:
        if task_id is None or annotations is not None or solutions_file is not None:
            raise UsageError("a solution FILE is graded with --task TASK_ID (and optionally --tasks FILE)")
        if not solution.is_file():
            raise UsageError(f"{solution}: no such solution file")
        if tasks_file is not None:
            known = {t.task_id: t for t in formats.read_tasks(tasks_file)}
        else:
            known = {str(r["task_id"]): formats.task_from_row(r, "stored target") for r in stored_targets(db)}
        if task_id not in known:
            raise UsageError(f"--task {task_id!r}: no such task ({', '.join(sorted(known)[:5]) or 'none stored'}"
                             f"{'...' if len(known) > 5 else ''})")
        return [formats.Job(known[task_id], solution, str(solution))]
    if solutions_file is None or (tasks_file is None) == (annotations is None):
        raise UsageError("give a solution FILE with --task, or --solutions FILE with one of --tasks FILE and --annotations FILE")
    solutions = formats.read_solutions(solutions_file)
    if tasks_file is not None:
        pairs = [(t, None) for t in formats.read_tasks(tasks_file)]
    else:
        pairs = formats.read_annotations(annotations, max_loss)  # type: ignore[arg-type]
    return formats.pair_jobs(pairs, solutions)  # type: ignore[return-value]


def evaluate_solutions(
    db: str, jobs: list[object], device: str, protocol: object, *, out: Path | None = None, seed: int | None = None,
    on_start: Callable[[object, int, int], None] | None = None, on_done: Callable[[object, object], None] | None = None,
) -> GradeResult:
    """Grade each job not graded yet in this environment under ``protocol``, store each evaluation as it ends,
    and write ``evaluation_results.json`` and ``report.json`` into ``out`` (when given)."""
    from sweep.grading import formats
    from sweep.grading.grader import grade
    from sweep.scoring.clip_score import ClipScorer

    check_device(device)
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    quiet_libraries()
    p = protocol
    factory = None if p.scorer_pretrained == "random" else (lambda: ClipScorer(p.scorer, p.scorer_pretrained, device))  # type: ignore[attr-defined]
    summary = grade(repository(db), jobs, device, protocol, scorer_factory=factory, seed=seed,  # type: ignore[arg-type]
                    on_start=on_start, on_done=on_done)  # type: ignore[arg-type]
    result = GradeResult(summary.entries, formats.report(summary.entries), summary.graded, summary.stored,
                         summary.environment)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name, data in (("evaluation_results.json", result.entries), ("report.json", result.report)):
            formats.write_json(out / name, data)
            result.written.append(out / name)
    return result


def evaluations(db: str, environment: str | None = None) -> list[Row]:
    """Every stored evaluation (the HTTP API's /evaluations and the report's section)."""
    ids = environments(db, environment)
    rows = repository(db).evaluations.rows()
    return [r for r in rows if ids is None or r["environment_id"] in ids]
