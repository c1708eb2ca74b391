"""The `sweep` command line: a thin front over search_space, the runner and storage."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from search_space import defaults
from search_space.spec import Space
from storage.engine import DEFAULT_URL
from storage.targets import scheduler_name
from sweep.catalogue import load_preset, load_space
from sweep.errors import SweepError, UsageError
from sweep.output import Column, Format, emit, settings_text

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Upper-bound speed-ups of training-free accelerations for diffusion pipelines.")
space_app = typer.Typer(no_args_is_help=True, help="Inspect search spaces.")
app.add_typer(space_app, name="space")
db_app = typer.Typer(no_args_is_help=True, help="The database schema (Alembic migrations).")
app.add_typer(db_app, name="db")

err = Console(stderr=True, markup=False, highlight=False)  # messages carry file names and "[tables]": plain text
F = TypeVar("F", bound=Callable[..., object])

SPEED_MAP_NOTE = ("speed map: quality unknown (random weights or scorer, and no quality of this configuration "
                  "stored from anywhere); the fastest setting measured, not an upper bound")

DbOption = Annotated[str, typer.Option("--db", envvar="SWEEP_DB", help="Database URL (default sqlite:///sweep.db).")]
MaxLossOption = Annotated[float, typer.Option("--max-loss", help="Largest accepted relative CLIP-score loss, in [0, 1).")]
FormatOption = Annotated[Format, typer.Option("--format", help="Output format.")]
PresetOption = Annotated[str | None, typer.Option("--preset", help="A space shipped with sweep, e.g. tiny.")]
SpeedOnlyOption = Annotated[bool, typer.Option(
    "--speed-only", help="Show every configuration's speed map (fastest setting, quality ignored).")]
WeightDependentOption = Annotated[bool, typer.Option(
    "--weight-dependent", help="Include speeds of weight-dependent methods (cache_dit) measured with random weights.")]
EnvironmentOption = Annotated[str | None, typer.Option(
    "--environment", help="Whose speeds: an environment id or part of its device name (default: every environment).")]
SpaceArgument = Annotated[Path | None, typer.Argument(help="Space file (TOML).", show_default=False)]


def handles_errors(command: F) -> F:
    """Turn a SweepError into one line on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        except SweepError as exc:  # the message is plain text: "[accelerators.x]" is not rich markup
            err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _quiet_libraries() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    import sweep._compat  # noqa: F401

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()


def _space(space_file: Path | None, preset: str | None) -> Space:
    if (space_file is None) == (preset is None):
        raise UsageError("give either a SPACE_FILE or --preset NAME (one of them)")
    return load_preset(preset) if preset is not None else load_space(space_file)  # type: ignore[arg-type]


def _check_loss(max_loss: float) -> None:
    if not 0.0 <= max_loss < 1.0:
        raise UsageError(f"--max-loss must be in [0, 1), got {max_loss}")


def _repository(url: str):  # type: ignore[no-untyped-def]
    from storage.repository import Repository

    return Repository(url)


def _speedup_text(r: dict[str, object]) -> str:
    if r["speedup"] is None:
        return "none measured"
    text = f"{r['speedup']:.2f}x"
    if r["ci_half_width"]:
        text += f" ±{100 * r['ci_half_width']:.0f}%" if r["ci_half_width"] >= 0.1 else f" ±{100 * r['ci_half_width']:.1f}%"  # type: ignore[operator]
    return text


def _loss_text(r: dict[str, object]) -> str:
    if r["score_loss"] is None:
        return "unknown"
    return f"{100 * r['score_loss']:.2f}%"  # type: ignore[operator]


BOUND_COLUMNS: list[Column] = [
    ("pipeline", lambda r: str(r["pipeline"])),
    ("scheduler", lambda r: scheduler_name(str(r["scheduler"]))),
    ("steps", lambda r: str(r["steps"])),
    ("speed-up", _speedup_text),
    ("timing", lambda r: {"precise": "precise", "first estimate": "first est."}.get(str(r["timing"]), "-")),
    ("score loss", _loss_text),
    ("settings", lambda r: settings_text(r["settings"]) + (" †" if r["speed_source"]["weight_dependent_random"] else "")),  # type: ignore[index]
    ("s/image", lambda r: f"{r['time']:.3f}" if r["time"] is not None else "-"),
    ("env", lambda r: str(r["environment_id"])),
]


def _print_bounds(rows: list[dict[str, object]], fmt: Format, max_loss: float) -> None:
    """Upper bounds where quality is known, the speed map where it is not; each row says which."""
    notes = []
    if any(not r["quality_known"] for r in rows):
        notes.append(SPEED_MAP_NOTE)
    sources = {str(r["quality_source"]["device"]) + ": " + str(r["quality_source"]["scorer"])  # type: ignore[index]
               for r in rows if r["quality_source"]}
    devices = sorted({(int(r["environment_id"]), str(r["device"])) for r in rows})  # type: ignore[call-overload]
    notes.extend(f"env {i}: {device}" for i, device in devices)
    notes.extend(f"quality from {source}" for source in sorted(sources))
    if any(r["speed_source"]["weight_dependent_random"] for r in rows):  # type: ignore[index]
        notes.append("† a weight-dependent method's speed measured with random weights: not its speed with real weights")
    jitter = [r for r in rows if r.get("deterministic") is False]
    if jitter:
        worst = max(int(r["repeat_max_pixel_diff"]) for r in jitter)  # type: ignore[call-overload]
        notes.append(
            f"{len(jitter)} baseline(s) not bit-reproducible on their device (same prompts and seeds, pixels "
            f"differed by up to {worst}/255): their score losses include that noise"
        )
    known = [r["quality_known"] for r in rows]
    title = (f"Upper-bound speed-up with CLIP-score loss ≤ {100 * max_loss:g}%" if all(known) else
             "Speed map (quality unknown)" if not any(known) else
             f"Upper-bound speed-up with CLIP-score loss ≤ {100 * max_loss:g}%, and speed map where quality is unknown")
    emit(rows, fmt, BOUND_COLUMNS, title=title, caption="\n".join(notes))


class _RichProgress:
    """A rich progress bar redrawn only when a measurement starts or ends (see sweep/progress.py)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("preparing", total=None)

    def start(self, total: int) -> None:
        self._progress.update(self._task, total=total)
        self.refresh()

    def describe(self, text: str) -> None:
        self._progress.update(self._task, description=text)
        self.refresh()

    def retotal(self, total: int) -> None:
        self._progress.update(self._task, total=total)
        self.refresh()

    def advance(self) -> None:
        self._progress.advance(self._task)
        self.refresh()

    def refresh(self) -> None:
        self._progress.refresh()


PROGRESS_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn())


class Strategy(str, Enum):
    grid = "grid"
    frontier = "frontier"
    optuna = "optuna"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``1h30m``, ``2h`` → seconds; a clear error otherwise."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise UsageError(f"--time-budget {text!r} is not a duration: use e.g. 90s, 30m, 1h30m, 2h")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise UsageError(f"--time-budget {text!r} must be longer than zero")
    return seconds


def parse_factors(text: str) -> dict[str, float]:
    """``easy=0.8,medium=1.0,hard=1.2`` → {difficulty: factor}; a clear error otherwise."""
    import math

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


def _devices(devices: str | None, workers: int, device: str) -> list[str]:
    if devices:
        found = [d.strip() for d in devices.split(",") if d.strip()]
        for d in found:
            _check_device(d)
        return found
    return [device] * workers


def _run_workers(  # type: ignore[no-untyped-def]
    repo, url: str, space: Space, devices: list[str], lease: float, quiet: bool, max_loss: float, confirm_top: int,
) -> tuple[int, list[int]]:
    """Queue the space, run one worker process per device, and follow the queue until they are done.
    Returns (the environment's id, the space's speed configuration ids)."""
    import time

    from storage.queue import WorkQueue
    from sweep.worker import (
        THREADS_VARIABLE,
        apply_cpu_threads,
        cpu_threads,
        enqueue_space,
        spawn_workers,
    )

    threads = cpu_threads(devices)
    if threads is not None:  # the environment (and its key) is the workers': same thread count here
        os.environ[THREADS_VARIABLE] = str(threads)
        apply_cpu_threads()
    env_id, added, speed_ids = enqueue_space(repo, space, devices[0], max_loss=max_loss, confirm_top=confirm_top)
    queue = WorkQueue(repo)
    if not quiet:
        err.print(f"{space.name}: {added} task(s) queued; starting {len(devices)} worker(s) on {', '.join(devices)}", highlight=False)
    processes = spawn_workers(url, devices, lease)
    with Progress(*PROGRESS_COLUMNS, console=err, transient=False, disable=quiet) as progress:
        bar = progress.add_task("queue", total=None)
        while any(p.poll() is None for p in processes):
            counts = queue.counts(env_id)
            total = sum(counts.values())
            progress.update(bar, total=total, completed=counts.get("done", 0) + counts.get("failed", 0),
                            description=f"queue: {counts.get('running', 0)} running, {counts.get('pending', 0)} pending")
            time.sleep(1)
    codes = [p.returncode for p in processes]
    if any(codes):
        err.print(f"worker exit codes: {codes}; unfinished tasks stay queued for the next `sweep worker`", highlight=False)
    return env_id, speed_ids


@app.command()
@handles_errors
def worker(
    db: DbOption = DEFAULT_URL,
    device: Annotated[str | None, typer.Option("--device", help="torch device (default: cuda if available, else cpu).")] = None,
    lease: Annotated[float, typer.Option("--lease", min=5, help="Seconds a claimed task is held without renewal.")] = 60.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Take queued tasks of this machine's environment from the database until none is left anywhere."""
    repo = _repository(db)
    _quiet_libraries()
    from sweep.runner import default_device
    from sweep.worker import Worker, apply_cpu_threads

    apply_cpu_threads()
    device = device or default_device()
    _check_device(device)
    summary = Worker(repo, device, lease_seconds=lease).run()
    if not quiet:
        err.print(
            f"worker {device}: {summary.measured} measured, {summary.failed} failed, {summary.retried} retried, "
            f"{summary.lost} lost lease, {summary.wall_seconds:.1f} s", highlight=False,
        )


@app.command()
@handles_errors
def report(
    out_dir: Annotated[Path, typer.Argument(help="Folder for index.html and its images.")],
    db: DbOption = DEFAULT_URL,
    max_loss: MaxLossOption = defaults.MAX_LOSS,
) -> None:
    """Write scatter plots with Pareto fronts, a heat map of upper bounds and an index.html with the tables."""
    _check_loss(max_loss)
    from sweep.report import write_report

    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} exists and is not a folder")
    index = write_report(_repository(db), out_dir, max_loss)
    err.print(f"report written to {index}", highlight=False)


@app.command()
@handles_errors
def serve(
    db: DbOption = DEFAULT_URL,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
) -> None:
    """Serve the queries read-only over HTTP as JSON: /upper-bounds, /query?target=, /targets, /status."""
    from sweep.serve import make_server

    try:
        server = make_server(_repository(db), host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    err.print(f"serving {db} on http://{host}:{server.server_port} (read-only; Ctrl-C stops)", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@db_app.command("upgrade")
@handles_errors
def db_upgrade(db: DbOption = DEFAULT_URL) -> None:
    """Apply the schema migrations this sweep has and the database lacks (stop the workers first)."""
    from storage.engine import open_engine
    from storage.schema import current, head, upgrade

    engine = open_engine(db)
    before = current(engine)
    upgrade(engine)
    err.print(f"{db}: schema {before or 'empty'} → {head()}", highlight=False)


@db_app.command("current")
@handles_errors
def db_current(db: DbOption = DEFAULT_URL) -> None:
    """Print the database's schema revision and this sweep's newest."""
    from storage.engine import open_engine
    from storage.schema import current, head

    print(json.dumps({"database": current(open_engine(db)), "sweep": head()}))


@app.command()
@handles_errors
def upbound(
    space_file: SpaceArgument = None,
    preset: PresetOption = None,
    db: DbOption = DEFAULT_URL,
    max_loss: MaxLossOption = defaults.MAX_LOSS,
    device: Annotated[str | None, typer.Option("--device", help="torch device (default: cuda if available, else cpu).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary: only the result.")] = False,
    fmt: FormatOption = Format.table,
    prompts: Annotated[str | None, typer.Option(
        "--prompts", help="Prompt source instead of the space's: bundled, coco[:DATASET], or a .txt/.jsonl/.csv/.parquet file.")] = None,
    speed_only: SpeedOnlyOption = False,
    weight_dependent: WeightDependentOption = False,
    confirm_top: Annotated[int, typer.Option(
        "--confirm-top", min=0, help="Contenders timed precisely per round before a bound is published (0: first estimates).")] = defaults.CONFIRM_TOP,
    strategy: Annotated[Strategy, typer.Option(
        "--strategy", help="grid: every setting; frontier: boundary search along each method's axis; optuna: a TPE study.")] = Strategy.grid,
    max_trials: Annotated[int | None, typer.Option(
        "--max-trials", min=1, help="Per base configuration: settings the strategy may evaluate (stored ones count).")] = None,
    time_budget: Annotated[str | None, typer.Option(
        "--time-budget", help="Wall time for the run (90s, 30m, 1h30m): no new measurement starts after it.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the optuna sampler.")] = 0,
    patience: Annotated[int, typer.Option(
        "--patience", min=1, help="optuna: stop after N new trials without a better setting within max-loss.")] = 15,
    workers: Annotated[int, typer.Option(
        "--workers", min=0, help="Queue the work in the database and run N local worker processes (grid only).")] = 0,
    devices: Annotated[str | None, typer.Option(
        "--devices", help="Comma-separated devices, one worker each (e.g. cuda:0,cuda:1); implies the queue.")] = None,
    lease: Annotated[float, typer.Option("--lease", min=5, help="Seconds a claimed task is held without renewal.")] = 60.0,
) -> None:
    """Measure what a space's upper bounds need and is not stored yet, then print them.

    Where quality is measured (pretrained weights, a real scorer), each row is an upper bound; where it is not
    (random weights measure speed only) and no quality of the same configuration is stored, the speed map.
    """
    _check_loss(max_loss)
    budget = parse_duration(time_budget) if time_budget is not None else None
    space = _space(space_file, preset)
    if prompts is not None:
        space = dataclasses.replace(space, protocol=dataclasses.replace(space.protocol, prompts=prompts))
    repo = _repository(db)
    _quiet_libraries()
    from sweep.runner import Runner, SearchOptions, default_device

    device = device or default_device()
    _check_device(device)
    search = SearchOptions(strategy.value, max_loss, max_trials, budget, seed, patience)
    device_list = _devices(devices, workers, device)
    if device_list:
        if strategy is not Strategy.grid or max_trials is not None or budget is not None:
            raise UsageError("--workers/--devices run the grid through the shared queue; --strategy, --max-trials and "
                             "--time-budget apply to a single process")
        env_id, speed_ids = _run_workers(repo, db, space, device_list, lease, quiet, max_loss, confirm_top)
    else:
        if quiet:
            summary = Runner(repo, device).run(space, search=search, confirm_top=confirm_top)
        else:
            with Progress(*PROGRESS_COLUMNS, console=err, transient=False, auto_refresh=False) as progress:
                summary = Runner(repo, device, _RichProgress(progress)).run(space, search=search, confirm_top=confirm_top)
            _print_summary(space, summary, strategy)
        assert summary.environment_id is not None
        env_id, speed_ids = summary.environment_id, summary.speed_config_ids
    rows = [b.as_row() for b in repo.bounds.rows(max_loss, environment_ids=[env_id], speed_config_ids=speed_ids,
                                                  speed_only=speed_only, weight_dependent=weight_dependent)]
    _print_bounds(rows, fmt, max_loss)


def _print_summary(space: Space, summary, strategy: Strategy) -> None:  # type: ignore[no-untyped-def]
    if strategy is not Strategy.grid:
        for label, result in summary.searches:
            err.print(f"[bold]{escape(label)}[/bold] ({result.strategy}: {result.evaluated} evaluated, {escape(result.stop)})",
                      markup=True)
            for line in result.log:
                err.print(f"  {line}", highlight=False, markup=False)
    overhead = (
        f" (wall / generation time = {summary.wall_seconds / summary.generation_seconds:.2f})"
        if summary.generation_seconds else ""
    )
    err.print(
        f"{space.name}: {summary.new} new, {summary.stored} stored, {summary.failed} failed, {summary.rejected} "
        f"rejected early, {summary.precise} timed precisely; {summary.images} images in {summary.wall_seconds:.1f} s"
        f"{overhead}", highlight=False,
    )
    if summary.budget_stop:
        err.print(f"stopped early: {summary.budget_stop}", highlight=False)


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")


def _environments(repo, environment: str | None) -> list[int] | None:  # type: ignore[no-untyped-def]
    if environment is None:
        return None
    found = repo.environment_ids(environment)
    if not found:
        raise UsageError(f"--environment {environment!r} matches no stored environment (give an id or part of a device name)")
    return found


@app.command()
@handles_errors
def query(
    db: DbOption = DEFAULT_URL, max_loss: MaxLossOption = defaults.MAX_LOSS, fmt: FormatOption = Format.table,
    speed_only: SpeedOnlyOption = False, environment: EnvironmentOption = None,
    weight_dependent: WeightDependentOption = False,
    target: Annotated[float | None, typer.Option(
        "--target", min=0.0, help="Per base configuration: the setting reaching this speed-up with the least loss.")] = None,
) -> None:
    """Print every stored upper bound (speed joined with quality), or, with --target, who reaches a target."""
    _check_loss(max_loss)
    repo = _repository(db)
    envs = _environments(repo, environment)
    if target is None:
        _print_bounds([b.as_row() for b in repo.bounds.rows(max_loss, environment_ids=envs, speed_only=speed_only,
                                                            weight_dependent=weight_dependent)], fmt, max_loss)
        return
    if speed_only:
        raise UsageError("--target looks up settings by their score loss; --speed-only shows no quality: give one of them")
    rows = repo.bounds.by_target(target, max_loss, envs, weight_dependent=weight_dependent)
    columns: list[Column] = [
        ("pipeline", lambda r: str(r["pipeline"])),
        ("scheduler", lambda r: scheduler_name(str(r["scheduler"]))),
        ("steps", lambda r: str(r["steps"])),
        ("reaches", lambda r: "yes" if r["reachable"] else f"no (best {r['speedup']:.2f}x)"),
        ("speed-up", _speedup_text),
        ("score loss", _loss_text),
        ("settings", lambda r: settings_text(r["settings"])),
        ("env", lambda r: str(r["environment_id"])),
    ]
    emit(rows, fmt, columns, title=f"Settings reaching {target:g}x with CLIP-score loss ≤ {100 * max_loss:g}%",
         caption="upper bounds with known quality only")


@app.command()
@handles_errors
def targets(
    db: DbOption = DEFAULT_URL, max_loss: MaxLossOption = defaults.MAX_LOSS, fmt: FormatOption = Format.table,
    factors: Annotated[str, typer.Option("--factors", help="difficulty=factor pairs; target = floor(u × factor × 10) / 10.")] =
        "easy=0.8,medium=1.0,hard=1.2",
    refresh: Annotated[bool, typer.Option("--refresh", help="Recompute targets whose upper bound changed (stale).")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Export one row per task to a .json or .csv file.")] = None,
) -> None:
    """Set target speed-ups for tasks from the precisely timed upper bounds with known quality, and list every
    stored target."""
    _check_loss(max_loss)
    parsed = parse_factors(factors)
    if out is not None and out.suffix.lower() not in (".json", ".csv"):
        raise UsageError(f"--out {out}: the export is .json or .csv")
    rows = _repository(db).targets.set_targets(parsed, max_loss, refresh=refresh)
    stale = sum(1 for r in rows if r["stale"])
    if stale:
        err.print(f"{stale} target(s) are stale: their upper bound changed since they were set (--refresh recomputes)",
                  highlight=False)
    if out is not None:
        _write_tasks(out, rows)
        err.print(f"{len(rows)} task(s) written to {out}", highlight=False)
    columns: list[Column] = [
        ("task", lambda r: str(r["task_id"])),
        ("target", lambda r: f"{r['target']:g}x"),
        ("from bound", lambda r: f"{r['upper_bound']:.2f}x" + (" (stale)" if r["stale"] else "") if r["upper_bound"] else "-"),
        ("sentence", lambda r: str(r["sentence"])),
        ("reached by", lambda r: settings_text(r["settings"]) if r["settings"] else "-"),
    ]
    emit(rows, fmt, columns, title=f"Targets (CLIP-score loss ≤ {100 * max_loss:g}%)")


def _write_tasks(out: Path, rows: list[dict[str, object]]) -> None:
    fields = ["task_id", "pipeline", "scheduler", "steps", "difficulty", "target", "sentence", "max_loss",
              "upper_bound", "stale", "settings"]
    if out.suffix.lower() == ".json":
        out.write_text(json.dumps([{k: r[k] for k in fields} for r in rows], indent=2) + "\n", encoding="utf-8")
        return
    import csv

    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({**{k: r[k] for k in fields}, "settings": json.dumps(r["settings"]) if r["settings"] else ""})


@app.command("export")
@handles_errors
def export(
    legacy: Annotated[Path, typer.Option("--legacy", help="Write the former search_params.json format here.")],
    db: DbOption = DEFAULT_URL,
    max_loss: Annotated[list[float] | None, typer.Option("--max-loss", help="Thresholds of the upper-bound entries (repeatable).")] = None,
) -> None:
    """Export upper bounds with known quality, and targets, in the legacy search_params.json format."""
    from sweep.legacy import export_legacy

    losses = max_loss or [defaults.MAX_LOSS]
    for loss in losses:
        _check_loss(loss)
    n = export_legacy(_repository(db), legacy, losses)
    err.print(f"{n} entries written to {legacy}", highlight=False)


@app.command("import")
@handles_errors
def import_(
    legacy: Annotated[Path, typer.Option("--legacy", help="A search_params.json file of the former scripts.")],
    db: DbOption = DEFAULT_URL,
) -> None:
    """Read a legacy search_params.json into the database as imported results, marked with their origin."""
    from sweep.legacy import import_legacy

    if not legacy.is_file():
        raise UsageError(f"--legacy {legacy}: no such file")
    trials, targets_added = import_legacy(_repository(db), legacy)
    err.print(f"{legacy}: {trials} setting(s) and {targets_added} target(s) imported", highlight=False)


@app.command()
@handles_errors
def pipelines(
    build: Annotated[str | None, typer.Option("--build", help="Construct this alias and print its parameter counts.")] = None,
    weights: Annotated[str, typer.Option("--weights", help="pretrained or random.")] = "random",
    model: Annotated[str | None, typer.Option("--model", help="Model reference for pretrained weights (default: the alias's).")] = None,
    device: Annotated[str, typer.Option(
        "--device", help="meta builds the architecture without allocating weights; cpu or cuda allocates them.")] = "meta",
    dtype: Annotated[str, typer.Option("--dtype")] = "float16",
    fmt: FormatOption = Format.table,
) -> None:
    """List the pipeline aliases; with --build, construct one and count each component's parameters."""
    from search_space.base_config import DTYPES
    from sweep.pipelines.registry import PIPELINES, canonical_alias

    if build is None:
        rows = [
            {"alias": i.alias, "pipeline_class": i.pipeline_class, "default_model": i.default_model,
             "denoiser": i.denoiser, "resolution": list(i.resolution), "weights": list(i.weights),
             "description": i.description}
            for i in PIPELINES.values()
        ]
        emit(rows, fmt, [
            ("alias", lambda r: str(r["alias"])), ("class", lambda r: str(r["pipeline_class"])),
            ("default model", lambda r: str(r["default_model"])), ("denoiser", lambda r: str(r["denoiser"])),
            ("resolution", lambda r: "x".join(map(str, r["resolution"]))),  # type: ignore[call-overload]
            ("weights", lambda r: ", ".join(r["weights"])),  # type: ignore[arg-type]
        ], title="Pipeline aliases")
        return
    alias = canonical_alias(build)
    if alias not in PIPELINES:
        raise UsageError(f"unknown pipeline {build!r}; valid: {', '.join(PIPELINES)}")
    info = PIPELINES[alias]
    if weights not in info.weights:
        raise UsageError(f"--weights {weights!r} for {alias}; valid: {', '.join(info.weights)}")
    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    if weights == "pretrained" and device == "meta":
        raise UsageError("pretrained weights need a real device: add --device cpu or --device cuda")
    if device != "meta":
        _check_device(device)
    _quiet_libraries()
    from search_space.base_config import BaseConfig
    from sweep.pipelines.loader import build_random, load_pipeline

    if weights == "random":
        pipe = build_random(info, device, dtype)
    else:
        base = BaseConfig(alias, model or info.default_model, "pretrained", "DDIMScheduler", 1, *info.resolution, dtype, 1)  # type: ignore[arg-type]
        pipe = load_pipeline(base, device)
    rows = [
        {"component": name, "class": type(module).__name__, "parameters": sum(p.numel() for p in module.parameters())}
        for name, module in sorted(pipe.components.items()) if hasattr(module, "parameters")
    ]
    rows.append({"component": "total", "class": info.pipeline_class, "parameters": sum(int(r["parameters"]) for r in rows)})  # type: ignore[call-overload]
    emit(rows, fmt, [
        ("component", lambda r: str(r["component"])), ("class", lambda r: str(r["class"])),
        ("parameters", lambda r: f"{r['parameters']:,}"),
    ], title=f"{alias} ({weights} weights, built on {device})")


@app.command()
@handles_errors
def accelerators(fmt: FormatOption = Format.table) -> None:
    """List the installed acceleration methods: parameters, what they apply to, and whether their speed
    depends on the weights."""
    from importlib import metadata

    from sweep.accelerators import ACCELERATORS

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    rows = [{
        "name": cls.name, "description": cls.description, "applies_to": cls.describe_support(),
        "denoisers": sorted(cls.denoisers), "pipeline_classes": sorted(cls.pipeline_classes or []),
        "speed_depends_on_weights": cls.speed_depends_on_weights,
        "combines_with_own_loader": sorted(cls.absorbs), "excludes": sorted(cls.excludes),
        "packages": {p: version(p) for p in cls.packages},
        "params": [{"name": p.name, "type": p.kind.__name__, "default": p.default, "valid": p.describe_valid(),
                    "aggressive": {1: "larger", -1: "smaller", 0: None}[p.aggressive], "help": p.help}
                   for p in cls.params],
    } for cls in ACCELERATORS.values()]
    emit(rows, fmt, [
        ("name", lambda r: str(r["name"])),
        ("applies to", lambda r: str(r["applies_to"])),
        ("parameters (→ more aggressive)", lambda r: ", ".join(
            p["name"] + {"larger": " ↑", "smaller": " ↓"}.get(p["aggressive"], "") for p in r["params"])),  # type: ignore[attr-defined,index]
        ("speed depends on weights", lambda r: "yes" if r["speed_depends_on_weights"] else "no"),
        ("packages", lambda r: ", ".join(f"{k} {v}" for k, v in r["packages"].items())),  # type: ignore[attr-defined]
    ], title="Acceleration methods")


@app.command()
@handles_errors
def status(db: DbOption = DEFAULT_URL, fmt: FormatOption = Format.table) -> None:
    """Count stored base configurations, speed and quality records by status, and queued tasks."""
    counts = _repository(db).status()
    if fmt is Format.json:
        Console().print_json(data=counts)
        return
    speed, quality = counts["speed"], counts["quality"]
    lines = [f"base configurations: {counts['base_configs']}",
             f"speed: {speed['baselines']} baseline(s), trials {_counts(speed['trials'])}, {speed['precise']} timed precisely",  # type: ignore[index]
             f"quality: {quality['baselines']} baseline(s), trials {_counts(quality['trials'])}"]  # type: ignore[index]
    if counts["tasks"]:
        lines.append(f"queued tasks: {_counts(counts['tasks'])}")
    Console().print("\n".join(lines), highlight=False)


def _counts(by_status: object) -> str:
    return ", ".join(f"{k} {v}" for k, v in dict(by_status).items()) or "none"  # type: ignore[call-overload]


@space_app.command("show")
@handles_errors
def space_show(space_file: SpaceArgument = None, preset: PresetOption = None, fmt: FormatOption = Format.table) -> None:
    """List a space's base configurations and how many settings each has."""
    space = _space(space_file, preset)
    rows = [
        {**{k: v for k, v in e.base.__dict__.items()}, "settings": len(e.settings) - 1, "key": e.base.key,
         "notes": list(e.notes)}
        for e in space.entries
    ]
    columns: list[Column] = [
        ("pipeline", lambda r: str(r["pipeline"])),
        ("weights", lambda r: str(r["weights"])),
        ("scheduler", lambda r: str(r["scheduler"])),
        ("steps", lambda r: str(r["steps"])),
        ("size", lambda r: f"{r['height']}x{r['width']}"),
        ("dtype", lambda r: str(r["dtype"])),
        ("batch", lambda r: str(r["batch_size"])),
        ("settings", lambda r: str(r["settings"])),
        ("notes", lambda r: "; ".join(r["notes"])),  # type: ignore[arg-type]
    ]
    emit(
        rows, fmt, columns, title=f"{space.name}: {len(space.entries)} base configurations, "
        f"{space.trial_count - len(space.entries)} accelerated settings (+1 baseline each)",
    )


def main() -> None:
    app(prog_name="sweep")


if __name__ == "__main__":
    sys.exit(main())
