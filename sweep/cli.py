"""The `sweep` command line: a thin front over search_space, the runner and storage."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from search_space.spec import Space, load_preset, load_space
from storage.engine import DEFAULT_URL
from sweep.errors import SweepError, UsageError
from sweep.output import Column, Format, emit, settings_text

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Upper-bound speed-ups of training-free accelerations for diffusion pipelines.")
space_app = typer.Typer(no_args_is_help=True, help="Inspect search spaces.")
app.add_typer(space_app, name="space")

err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., object])

RANDOM_NOTE = "* CLIP scores from random weights (pipeline or scorer): not real quality, speed only."

DbOption = Annotated[str, typer.Option("--db", envvar="SWEEP_DB", help="Database URL (default sqlite:///sweep.db).")]
MaxLossOption = Annotated[float, typer.Option("--max-loss", help="Largest accepted relative CLIP-score loss, in [0, 1).")]
FormatOption = Annotated[Format, typer.Option("--format", help="Output format.")]
PresetOption = Annotated[str | None, typer.Option("--preset", help="A space shipped with sweep, e.g. tiny.")]
SpaceArgument = Annotated[Path | None, typer.Argument(help="Space file (TOML).", show_default=False)]


def handles_errors(command: F) -> F:
    """Turn a SweepError into one line on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        except SweepError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _quiet_libraries() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import sweep._compat  # noqa: F401
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

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


UPPER_BOUND_COLUMNS: list[Column] = [
    ("pipeline", lambda r: str(r["pipeline"]) + ("" if r["quality_meaningful"] else " *")),
    ("scheduler", lambda r: str(r["scheduler"])),
    ("steps", lambda r: str(r["steps"])),
    ("speed-up", lambda r: f"{r['speedup']:.2f}x"),
    ("score loss", lambda r: f"{100 * r['score_loss']:.2f}%"),  # type: ignore[operator]
    ("s/image", lambda r: f"{r['time']:.4f}"),
    ("baseline s/image", lambda r: f"{r['baseline_time']:.4f}"),
    ("settings", lambda r: settings_text(r["settings"])),
    ("trials", lambda r: str(r["trials"])),
    ("device", lambda r: str(r["device"])),
]


def _print_upper_bounds(rows: list[dict[str, object]], fmt: Format, max_loss: float) -> None:
    random_rows = any(not r["quality_meaningful"] for r in rows)
    emit(
        rows, fmt, UPPER_BOUND_COLUMNS, title=f"Upper-bound speed-up with CLIP-score loss ≤ {100 * max_loss:g}%",
        caption=RANDOM_NOTE if random_rows else "",
    )


class _RichProgress:
    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("preparing", total=None)

    def start(self, total: int) -> None:
        self._progress.update(self._task, total=total)

    def describe(self, text: str) -> None:
        self._progress.update(self._task, description=text)

    def advance(self) -> None:
        self._progress.advance(self._task)


@app.command()
@handles_errors
def upbound(
    space_file: SpaceArgument = None,
    preset: PresetOption = None,
    db: DbOption = DEFAULT_URL,
    max_loss: MaxLossOption = 0.02,
    device: Annotated[str | None, typer.Option("--device", help="torch device (default: cuda if available, else cpu).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary: only the result.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Measure every setting of a space not yet stored, then print the upper bound per base configuration."""
    _check_loss(max_loss)
    space = _space(space_file, preset)
    repo = _repository(db)
    _quiet_libraries()
    from sweep.runner import Runner, default_device

    device = device or default_device()
    _check_device(device)
    if quiet:
        summary = Runner(repo, device).run(space)
    else:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=False) as progress:
            summary = Runner(repo, device, _RichProgress(progress)).run(space)
        overhead = (
            f" (wall / generation time = {summary.wall_seconds / summary.generation_seconds:.2f})"
            if summary.generation_seconds else ""
        )
        err.print(
            f"{space.name}: {summary.new} new, {summary.stored} stored, {summary.failed} failed "
            f"in {summary.wall_seconds:.1f} s{overhead}", highlight=False,
        )
    rows = [u.as_row() for u in repo.upper_bounds(max_loss, summary.base_keys)]
    _print_upper_bounds(rows, fmt, max_loss)


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


@app.command()
@handles_errors
def query(db: DbOption = DEFAULT_URL, max_loss: MaxLossOption = 0.02, fmt: FormatOption = Format.table) -> None:
    """Print the stored upper bound of every base configuration."""
    _check_loss(max_loss)
    rows = [u.as_row() for u in _repository(db).upper_bounds(max_loss)]
    _print_upper_bounds(rows, fmt, max_loss)


@app.command()
@handles_errors
def status(db: DbOption = DEFAULT_URL, fmt: FormatOption = Format.table) -> None:
    """Count stored base configurations, baselines and trials by status."""
    counts = _repository(db).status()
    if fmt is Format.json:
        Console().print_json(data=counts)
        return
    trials = counts["trials"]
    assert isinstance(trials, dict)
    Console().print(
        f"base configurations: {counts['base_configs']}\nbaselines: {counts['baselines']}\n"
        + "\n".join(f"trials {k}: {v}" for k, v in trials.items()),
        highlight=False,
    )


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
