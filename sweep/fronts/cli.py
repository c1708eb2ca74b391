"""The `sweep` command line: parses arguments, calls the application layer (sweep/app.py) and prints."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from typer.core import TyperGroup

try:
    from typer._click import exceptions as click_errors  # recent typer vendors click
except ImportError:  # pragma: no cover (typer before the vendoring)
    from click import exceptions as click_errors
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from search_space import defaults
from search_space.spec import Space
from storage.engine import DEFAULT_URL, shown
from sweep import app as app_layer
from sweep import inputs
from sweep.errors import SweepError, UsageError
from sweep.progress import PROGRESS_COLUMNS, RichProgress
from sweep.reporting.output import (
    ACCELERATOR_COLUMNS,
    COMPONENT_COLUMNS,
    ESTIMATE_COLUMNS,
    GRADE_COLUMNS,
    PIPELINE_COLUMNS,
    REACHING_COLUMNS,
    SPACE_COLUMNS,
    TARGET_COLUMNS,
    Format,
    emit,
    grade_report_text,
    print_bounds,
    status_text,
    summary_text,
)

err = Console(stderr=True, markup=False, highlight=False)  # messages carry file names and "[tables]": plain text


class OneLineErrors(TyperGroup):
    """Every mistake in the arguments themselves (a value out of an option's range, a missing option, an unknown
    command) ends as one line and exit 2, like the application's own errors, instead of click's framed box."""

    def main(self, *args: object, standalone_mode: bool = True, **kwargs: object) -> object:  # type: ignore[override]
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[arg-type]
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[arg-type]
        except click_errors.NoArgsIsHelpError as exc:
            print(exc.ctx.get_help() if exc.ctx else exc.format_message())
            sys.exit(2)
        except click_errors.ClickException as exc:
            err.print(f"error: {' '.join(exc.format_message().split())}", soft_wrap=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            err.print("error: aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, cls=OneLineErrors,
                  help="Upper-bound speed-ups of training-free accelerations for diffusion pipelines.")
space_app = typer.Typer(no_args_is_help=True, help="Inspect search spaces.")
app.add_typer(space_app, name="space")
db_app = typer.Typer(no_args_is_help=True, help="The database schema (Alembic migrations).")
app.add_typer(db_app, name="db")
F = TypeVar("F", bound=Callable[..., object])


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
DeviceOption = Annotated[str | None, typer.Option("--device", help="torch device (default: cuda if available, else cpu).")]
LeaseOption = Annotated[float, typer.Option("--lease", min=5, help="Seconds a claimed task is held without renewal.")]
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


def _devices(devices: str | None, workers: int, device: str | None) -> list[str]:
    """The devices of the worker processes: --devices, else --workers copies of --device (none: one process)."""
    if devices is not None:
        if workers and workers != len(devices.split(",")):
            raise UsageError(f"--workers {workers} and --devices {devices!r} disagree: give one of them")
        return inputs.parse_devices(devices)
    if not workers:
        return []
    return [app_layer.resolve_device(device)] * workers


class Strategy(str, Enum):
    grid = "grid"
    frontier = "frontier"
    optuna = "optuna"


class Weights(str, Enum):
    random = "random"
    pretrained = "pretrained"


WeightsOption = Annotated[Weights | None, typer.Option(
    "--weights", help="Every base configuration on these weights instead of the space's: random (speed only, no hub "
                      "access needed) or pretrained.")]


@app.command()
@handles_errors
def queue(
    space_file: SpaceArgument = None,
    preset: PresetOption = None,
    db: DbOption = DEFAULT_URL,
    max_loss: MaxLossOption = defaults.MAX_LOSS,
    device: DeviceOption = None,
    prompts: Annotated[str | None, typer.Option(
        "--prompts", help="Prompt source instead of the space's: bundled, coco[:DATASET], or a .txt/.jsonl/.csv/.parquet file.")] = None,
    weights: WeightsOption = None,
    confirm_top: Annotated[int, typer.Option(
        "--confirm-top", min=0, help="Contenders timed precisely per round before a bound is published (0: first estimates).")] = defaults.CONFIRM_TOP,
) -> None:
    """Queue what a space's upper bounds need for this machine's environment, and start no worker.

    Every worker of a cluster job may run it before `sweep worker`: a task is queued once.
    """
    space = app_layer.load_space(space_file, preset, prompts, weights.value if weights else None)
    device, env_id, added = app_layer.queue_space(db, space, device, max_loss=max_loss, confirm_top=confirm_top)
    print(f"{space.name}: {added} task(s) queued for environment {env_id} ({device})")


@app.command()
@handles_errors
def worker(
    db: DbOption = DEFAULT_URL,
    device: DeviceOption = None,
    lease: LeaseOption = defaults.LEASE_SECONDS,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Take queued tasks of this machine's environment from the database until none is left anywhere."""
    device, summary = app_layer.run_worker(db, device, lease)
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
    index = app_layer.write_report(db, out_dir, max_loss)
    err.print(f"report written to {index}", highlight=False)


@app.command()
@handles_errors
def serve(
    db: DbOption = DEFAULT_URL,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
) -> None:
    """Serve the queries read-only over HTTP as JSON: /upper-bounds, /query?target=, /targets, /status."""
    from sweep.fronts.serve import make_server

    try:
        server = make_server(db, host, port)
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
    before, now = app_layer.schema_upgrade(db)
    err.print(f"{db}: schema {before or 'empty'} → {now}", highlight=False)


@db_app.command("current")
@handles_errors
def db_current(db: DbOption = DEFAULT_URL) -> None:
    """Print the database's schema revision and this sweep's newest."""
    print(json.dumps(app_layer.schema_current(db)))


@db_app.command("check")
@handles_errors
def db_check(db: DbOption = DEFAULT_URL) -> None:
    """Check the database's schema against sweep's tables and columns, changing nothing (exit 2 names the damage)."""
    found = app_layer.schema_check(db)
    if found["state"] == "ok":
        print(f"schema ok at {found['database']}")
    elif found["state"] == "empty":
        print(f"no sweep schema yet: the first command creates it at {found['sweep']}")
    else:
        print(f"schema at {found['database']}, older than this sweep's {found['sweep']} (its tables are checked once "
              f"upgraded): stop its workers, then run sweep db upgrade --db {shown(db)}")


@app.command()
@handles_errors
def upbound(
    space_file: SpaceArgument = None,
    preset: PresetOption = None,
    db: DbOption = DEFAULT_URL,
    max_loss: MaxLossOption = defaults.MAX_LOSS,
    device: DeviceOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary: only the result.")] = False,
    fmt: FormatOption = Format.table,
    prompts: Annotated[str | None, typer.Option(
        "--prompts", help="Prompt source instead of the space's: bundled, coco[:DATASET], or a .txt/.jsonl/.csv/.parquet file.")] = None,
    weights: WeightsOption = None,
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
    seed: Annotated[int, typer.Option("--seed", help=f"Seed of the optuna sampler, 0..{inputs.SEED_MAX}.")] = 0,
    patience: Annotated[int, typer.Option(
        "--patience", min=1, help="optuna: stop after N new trials without a better setting within max-loss.")] = defaults.PATIENCE,
    workers: Annotated[int, typer.Option(
        "--workers", min=0, help="Queue the work in the database and run N local worker processes (grid only).")] = 0,
    devices: Annotated[str | None, typer.Option(
        "--devices", help="Comma-separated devices, one worker each (e.g. cuda:0,cuda:1); implies the queue.")] = None,
    lease: LeaseOption = defaults.LEASE_SECONDS,
    canary: Annotated[bool | None, typer.Option(
        "--canary/--no-canary", help="Before adding to a stored environment, re-time one of its speed baselines; where "
        "the machine is in another state, keep the new speeds apart (default: on for a GPU device, off for a CPU; "
        "one-process runs: workers add to the environment their key names).")] = None,
    shared_estimates: Annotated[bool, typer.Option(
        "--shared-estimates/--no-shared-estimates", help="A setting measured in a row of another scheduler with the "
        "same denoiser calls lends its first estimate; contenders are still timed precisely in each row.")] = True,
) -> None:
    """Measure what a space's upper bounds need and is not stored yet, then print them.

    Where quality is measured (pretrained weights, a real scorer), each row is an upper bound; where it is not
    (random weights measure speed only) and no quality of the same configuration is stored, the speed map.
    """
    budget = inputs.parse_duration(time_budget) if time_budget is not None else None
    inputs.check_max_loss(max_loss)
    inputs.check_seed(seed)
    space = app_layer.load_space(space_file, preset, prompts, weights.value if weights else None)
    from sweep.study.runner import SearchOptions

    search = SearchOptions(strategy.value, max_loss, max_trials, budget, seed, patience)
    device_list = _devices(devices, workers, device)
    if device_list:
        if strategy is not Strategy.grid or max_trials is not None or budget is not None or canary \
                or not shared_estimates:
            raise UsageError("--workers/--devices run the grid through the shared queue; --strategy, --max-trials, "
                             "--time-budget, --canary and --no-shared-estimates apply to a single process")
        result = _run_workers(db, space, device_list, lease, quiet, max_loss, confirm_top)
    else:
        device = app_layer.resolve_device(device)
        if quiet:
            result = app_layer.run_space(db, space, device, search, confirm_top=confirm_top, canary=canary,
                                         shared_estimates=shared_estimates)
            if result.summary is not None and result.summary.canary:
                err.print(result.summary.canary, highlight=False, soft_wrap=True)
        else:
            with Progress(*PROGRESS_COLUMNS, console=err, transient=False, auto_refresh=False) as progress:
                result = app_layer.run_space(db, space, device, search, confirm_top=confirm_top,
                                             progress=RichProgress(progress), canary=canary,
                                             shared_estimates=shared_estimates)
            err.print(summary_text(space.name, result.summary, strategy is not Strategy.grid), highlight=False, soft_wrap=True)
    rows = app_layer.upper_bounds(db, max_loss, environment_ids=[result.environment_id],
                                  speed_config_ids=result.speed_config_ids, speed_only=speed_only,
                                  weight_dependent=weight_dependent)
    print_bounds(rows, fmt, max_loss)


def _run_workers(  # type: ignore[no-untyped-def]
    db: str, space: Space, devices: list[str], lease: float, quiet: bool, max_loss: float, confirm_top: int,
):
    """The queue and its worker processes, followed with a progress bar."""
    with Progress(*PROGRESS_COLUMNS, console=err, transient=False, disable=quiet) as progress:
        bar = progress.add_task("queue", total=None)

        def queued(added: int) -> None:
            if not quiet:
                progress.console.print(f"{space.name}: {added} task(s) queued; starting {len(devices)} worker(s) on "
                                       f"{', '.join(devices)}", highlight=False)

        def counts(by_status: Mapping[str, int]) -> None:
            progress.update(bar, total=sum(by_status.values()),
                            completed=by_status.get("done", 0) + by_status.get("failed", 0),
                            description=f"queue: {by_status.get('running', 0)} running, {by_status.get('pending', 0)} pending")

        result = app_layer.run_with_workers(db, space, devices, max_loss=max_loss, confirm_top=confirm_top, lease=lease,
                                            on_queued=queued, on_counts=counts)
    if any(result.worker_exit_codes):
        err.print(f"worker exit codes: {result.worker_exit_codes}; unfinished tasks stay queued for the next `sweep worker`",
                  highlight=False)
    return result


@app.command()
@handles_errors
def query(
    db: DbOption = DEFAULT_URL, max_loss: MaxLossOption = defaults.MAX_LOSS, fmt: FormatOption = Format.table,
    speed_only: SpeedOnlyOption = False, environment: EnvironmentOption = None,
    weight_dependent: WeightDependentOption = False,
    target: Annotated[float | None, typer.Option(
        "--target", help="Per base configuration: the setting reaching this speed-up with the least loss.")] = None,
) -> None:
    """Print every stored upper bound (speed joined with quality), or, with --target, who reaches a target."""
    if target is None:
        print_bounds(app_layer.upper_bounds(db, max_loss, environment=environment, speed_only=speed_only,
                                             weight_dependent=weight_dependent), fmt, max_loss)
        return
    if speed_only:
        raise UsageError("--target looks up settings by their score loss; --speed-only shows no quality: give one of them")
    rows = app_layer.reaching(db, target, max_loss, environment=environment, weight_dependent=weight_dependent)
    emit(rows, fmt, REACHING_COLUMNS, title=f"Settings reaching {target:g}x with CLIP-score loss ≤ {100 * max_loss:g}%",
         caption="upper bounds with known quality only")


@app.command()
@handles_errors
def targets(
    db: DbOption = DEFAULT_URL, max_loss: MaxLossOption = defaults.MAX_LOSS, fmt: FormatOption = Format.table,
    factors: Annotated[str, typer.Option("--factors", help="difficulty=factor pairs; target = floor(u × factor × 10) / 10.")] =
        defaults.TARGET_FACTORS,
    refresh: Annotated[bool, typer.Option("--refresh", help="Recompute targets whose upper bound changed (stale).")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Export one row per task to a .json or .csv file.")] = None,
) -> None:
    """Set target speed-ups for tasks from the precisely timed upper bounds with known quality, and list every
    stored target."""
    parsed = app_layer.parse_factors(factors)
    if out is not None:
        app_layer.check_tasks_file(out)
    rows = app_layer.set_targets(db, parsed, max_loss, refresh=refresh)
    stale = sum(1 for r in rows if r["stale"])
    if stale:
        err.print(f"{stale} target(s) are stale: their upper bound changed since they were set (--refresh recomputes)",
                  highlight=False)
    if out is not None:
        app_layer.write_tasks(out, rows)
        err.print(f"{len(rows)} task(s) written to {out}", highlight=False)
    emit(rows, fmt, TARGET_COLUMNS, title=f"Targets (CLIP-score loss ≤ {100 * max_loss:g}%)")


@app.command("export")
@handles_errors
def export(
    legacy: Annotated[Path, typer.Option("--legacy", help="Write the former search_params.json format here.")],
    db: DbOption = DEFAULT_URL,
    max_loss: Annotated[list[float] | None, typer.Option("--max-loss", help="Thresholds of the upper-bound entries (repeatable).")] = None,
) -> None:
    """Export upper bounds with known quality, and targets, in the legacy search_params.json format."""
    n = app_layer.export_legacy(db, legacy, max_loss)
    err.print(f"{n} entries written to {legacy}", highlight=False)


@app.command("import")
@handles_errors
def import_(
    legacy: Annotated[Path, typer.Option("--legacy", help="A search_params.json file of the former scripts.")],
    db: DbOption = DEFAULT_URL,
) -> None:
    """Read a legacy search_params.json into the database as imported results, marked with their origin."""
    trials, targets_added = app_layer.import_legacy(db, legacy)
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
    """List the pipeline aliases; with --build, construct one (with the model's own scheduler) and count each
    component's parameters."""
    if build is None:
        emit(app_layer.pipeline_rows(), fmt, PIPELINE_COLUMNS, title="Pipeline aliases")
        return
    alias, rows = app_layer.build_pipeline(build, weights, model=model, device=device, dtype=dtype)
    emit(rows, fmt, COMPONENT_COLUMNS, title=f"{alias} ({weights} weights, built on {device})")


@app.command()
@handles_errors
def accelerators(fmt: FormatOption = Format.table) -> None:
    """List the installed acceleration methods: parameters, what they apply to, and whether their speed
    depends on the weights."""
    emit(app_layer.accelerator_rows(), fmt, ACCELERATOR_COLUMNS, title="Acceleration methods")


@app.command()
@handles_errors
def status(db: DbOption = DEFAULT_URL, fmt: FormatOption = Format.table) -> None:
    """Count stored base configurations, speed and quality records by status, and queued tasks."""
    counts = app_layer.status(db)
    if fmt is Format.json:
        Console().print_json(data=counts)
        return
    Console().print(status_text(counts), highlight=False)


@app.command()
@handles_errors
def evaluate(
    solution: Annotated[Path | None, typer.Argument(help="A solution file (with --task).", show_default=False)] = None,
    task: Annotated[str | None, typer.Option("--task", help="The task a solution FILE is graded against.")] = None,
    tasks: Annotated[Path | None, typer.Option("--tasks", help="A tasks file written by `sweep targets --out`.")] = None,
    annotations: Annotated[Path | None, typer.Option(
        "--annotations", help="The former annotation file (prompt_id, prompt_context, difficulty, path_to_gt_code).")] = None,
    solutions: Annotated[Path | None, typer.Option(
        "--solutions", help="The former generated-code file (prompt_id, path_to_gen_code).")] = None,
    db: DbOption = DEFAULT_URL,
    device: DeviceOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for evaluation_results.json and report.json.")] = Path("."),
    max_loss: MaxLossOption = defaults.MAX_LOSS,
    prompts: Annotated[str, typer.Option("--prompts", help="Prompt source: bundled, coco[:DATASET], or a file.")] = defaults.PROMPTS,
    num_prompts: Annotated[int, typer.Option("--num-prompts", help="Prompts the pairs cycle through.")] = defaults.GRADE_PROMPTS,
    scorer: Annotated[str, typer.Option("--scorer", help="open_clip model of the CLIP score.")] = defaults.SCORER,
    scorer_pretrained: Annotated[str, typer.Option(
        "--scorer-pretrained", help="open_clip tag, a checkpoint path, or random (speed only).")] = defaults.SCORER_PRETRAINED,
    min_pairs: Annotated[int, typer.Option("--min-pairs")] = defaults.GRADE_MIN_PAIRS,
    max_pairs: Annotated[int, typer.Option("--max-pairs")] = defaults.GRADE_MAX_PAIRS,
    time_limit: Annotated[str, typer.Option("--time-limit", help="Wall-clock limit of one request to a solution.")] = "10m",
    memory_limit: Annotated[float, typer.Option("--memory-limit", help="GiB a solution's process may use.")] = defaults.GRADE_MEMORY_GIB,
    fmt: FormatOption = Format.table,
) -> None:
    """Grade solutions against their tasks: configuration checked by observation, speed-up timed interleaved
    against the baseline on this device, CLIP-score loss of the same calls' images; each evaluation stored once."""
    inputs.check_max_loss(max_loss)
    protocol = app_layer.grading_protocol(prompts, num_prompts, scorer=scorer, scorer_pretrained=scorer_pretrained,
                                          min_pairs=min_pairs, max_pairs=max_pairs,
                                          request_seconds=inputs.parse_duration(time_limit, "--time-limit"),
                                          memory_gib=memory_limit)
    jobs = app_layer.grading_jobs(db, solution=solution, task_id=task, tasks_file=tasks, annotations=annotations,
                                  solutions_file=solutions, max_loss=max_loss)
    device = app_layer.resolve_device(device)

    def started(job: object, index: int, total: int) -> None:
        if fmt is Format.table:
            err.print(f"[{index + 1}/{total}] grading {job.task.task_id} ({job.gen_path})", highlight=False)  # type: ignore[attr-defined]

    result = app_layer.evaluate_solutions(db, jobs, device, protocol, out=out, on_start=started)
    if fmt is Format.json:
        print(json.dumps({"environment": result.environment, "graded": result.graded, "stored": result.stored,
                          "evaluation_results": result.entries,
                          "report": {k: v for k, v in result.report.items() if k != "task_details"}}, default=str))
        return
    emit(result.entries, fmt, GRADE_COLUMNS, title=f"Evaluations on {result.environment} "
         f"({result.graded} graded now, {result.stored} stored before)")
    err.print(grade_report_text(result.report), highlight=False)
    if result.written:
        err.print(f"written: {', '.join(str(p) for p in result.written)}", highlight=False)


@space_app.command("show")
@handles_errors
def space_show(
    space_file: SpaceArgument = None, preset: PresetOption = None, fmt: FormatOption = Format.table,
    estimate: Annotated[bool, typer.Option(
        "--estimate", help="Price each row from the speed models of what --db stores: predicted seconds per image, "
        "fastest predicted setting, predicted seconds of its speed study (predictions, not measurements).")] = False,
    db: DbOption = DEFAULT_URL, environment: EnvironmentOption = None,
    weights: Annotated[str | None, typer.Option("--weights", help="Replace every row's weights (random: speed only).")] = None,
) -> None:
    """List a space's base configurations and how many settings each has (--estimate: what each would cost)."""
    space = app_layer.load_space(space_file, preset, weights=weights)
    if estimate:
        rows = app_layer.estimate_space(space, db, environment)
        total = sum(float(r["study_s"]) for r in rows if r["study_s"] is not None)  # type: ignore[arg-type]
        missing = sum(1 for r in rows if r["study_s"] is None)
        emit(rows, fmt, ESTIMATE_COLUMNS, title=f"{space.name}: predicted speed-study cost {total:.0f} s of generation "
             f"for {len(rows) - missing} rows" + (f"; {missing} rows with no model yet" if missing else ""))
        return
    rows = app_layer.space_rows(space)
    emit(
        rows, fmt, SPACE_COLUMNS, title=f"{space.name}: {len(space.entries)} base configurations, "
        f"{space.trial_count - len(space.entries)} accelerated settings (+1 baseline each)",
    )


def main() -> None:
    app(prog_name="sweep")


if __name__ == "__main__":
    sys.exit(main())
