"""Shared output formats for CLI commands: a rich table for people, JSON for tools."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from enum import Enum

from rich.console import Console
from rich.table import Table

from search_space import defaults
from storage.targets import scheduler_name


class Format(str, Enum):
    table = "table"
    json = "json"


Column = tuple[str, Callable[[dict[str, object]], str]]
TABLE_WIDTH = 120
"""Tables printed to a pipe or file fit this many columns; full detail stays in --format json."""


def emit(
    rows: Sequence[dict[str, object]], fmt: Format, columns: Sequence[Column], *, title: str = "",
    caption: str = "", console: Console | None = None,
) -> None:
    # Piped output (files, CI logs) gets the width of a normal terminal; cells wrap inside their columns.
    console = console or (Console() if sys.stdout.isatty() else Console(width=TABLE_WIDTH))
    if fmt is Format.json:
        console.print_json(json.dumps(list(rows)), indent=2) if rows else print("[]")
        return
    table = Table(title=title or None, caption=caption or None, caption_justify="left")
    for header, _ in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(*(cell(row) for _, cell in columns))
    console.print(table)


def settings_text(settings: object) -> str:
    """Short text of a settings object: primary and non-default parameters of each accelerator."""
    from sweep.accelerators import ACCELERATORS

    if not isinstance(settings, dict) or not settings:
        return "baseline"
    parts = []
    for name, params in settings.items():
        cls = ACCELERATORS.get(name)
        parts.append(cls.short(params) if cls else f"{name}({params})")
    return " + ".join(parts)


# -- the upper-bound table (upbound, query) --------------------------------------------------------------------

SPEED_MAP_NOTE = ("speed map: quality unknown (random weights or scorer, and no quality of this configuration "
                  "stored from anywhere); the fastest setting measured, not an upper bound")


def speedup_text(r: dict[str, object]) -> str:
    if r["speedup"] is None:
        return "none measured"
    text = f"{r['speedup']:.2f}x"
    if r["ci_half_width"]:
        text += f" ±{100 * r['ci_half_width']:.0f}%" if r["ci_half_width"] >= 0.1 else f" ±{100 * r['ci_half_width']:.1f}%"  # type: ignore[operator]
    return text


def loss_text(r: dict[str, object]) -> str:
    if r["score_loss"] is None:
        return "unknown"
    return f"{100 * r['score_loss']:.2f}%"  # type: ignore[operator]


BOUND_COLUMNS: list[Column] = [
    ("pipeline", lambda r: str(r["pipeline"])),
    ("scheduler", lambda r: scheduler_name(str(r["scheduler"]))),
    ("steps", lambda r: str(r["steps"])),
    ("speed-up", speedup_text),
    ("timing", lambda r: {"precise": "precise", "first estimate": "first est.", "shared estimate": "shared est.",
                          "below leader": "below leader"}.get(
        str(r["timing"]), "-") + (" ‡" if r.get("cpu_bound") else "")),
    ("score loss", loss_text),
    ("settings", lambda r: settings_text(r["settings"]) + (" †" if r["speed_source"]["weight_dependent_random"] else "")),  # type: ignore[index]
    ("s/image", lambda r: f"{r['time']:.3f}" if r["time"] is not None else "-"),
    ("env", lambda r: str(r["environment_id"])),
]


def print_bounds(rows: list[dict[str, object]], fmt: Format, max_loss: float) -> None:
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
    if any(r.get("cpu_bound") for r in rows):
        notes.append(f"‡ CPU-bound: timed while the GPU was busy under {100 * defaults.CPU_BOUND_BELOW:g}% of the time, so "
                     "the host's CPU set it (a speed-up that moves with the host's other tenants)")
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




# -- the other commands' tables ----------------------------------------------------------------------------------

REACHING_COLUMNS: list[Column] = [
    ("pipeline", lambda r: str(r["pipeline"])),
    ("scheduler", lambda r: scheduler_name(str(r["scheduler"]))),
    ("steps", lambda r: str(r["steps"])),
    ("reaches", lambda r: {"reached": "yes", "borderline": "borderline (its interval holds the target)"}.get(
        str(r.get("decision")), f"no (best {r['speedup']:.2f}x)" if r["speedup"] is not None else "no")),
    ("speed-up", speedup_text),
    ("score loss", loss_text),
    ("settings", lambda r: settings_text(r["settings"])),
    ("env", lambda r: str(r["environment_id"])),
]


TARGET_COLUMNS: list[Column] = [
    ("task", lambda r: str(r["task_id"])),
    ("target", lambda r: f"{r['target']:g}x"),
    ("from bound", lambda r: f"{r['upper_bound']:.2f}x" + (" (stale)" if r["stale"] else "") if r["upper_bound"] else "-"),
    ("sentence", lambda r: str(r["sentence"])),
    ("reached by", lambda r: settings_text(r["settings"]) if r["settings"] else "-"),
]


ESTIMATE_COLUMNS: list[Column] = [
    ("pipeline", lambda r: str(r["pipeline"])),
    ("scheduler", lambda r: str(r["scheduler"])),
    ("steps", lambda r: str(r["steps"])),
    ("size", lambda r: f"{r['height']}x{r['width']}"),
    ("env", lambda r: "-" if r["environment"] is None else f"{r['environment']}: {r['device']}"),
    ("predicted baseline s/image", lambda r: "-" if r["baseline_s"] is None else f"{r['baseline_s']:.3f}"),
    ("settings predicted", lambda r: f"{r['predicted']} / {r['settings']}"),
    ("fastest predicted", lambda r: "-" if r["fastest"] is None else f"{r['fastest_speedup']:.2f}x {r['fastest']}"),
    ("predicted study s", lambda r: "-" if r["study_s"] is None else f"{r['study_s']:.0f}"),
    ("images (baseline / first estimates / precise)", lambda r: "-" if r["study_s"] is None else
     f"{r['study_images']['baseline']} / {r['study_images']['first_estimates']} ({r['first_estimates']}) / "
     f"{r['study_images']['precise']}"),
    ("stored: median |predicted/measured − 1|", lambda r: "-" if not r.get("median_error") and r.get("median_error") != 0
     else f"{r['median_error']:.1%} over {r['stored_checked']}"),
    ("note", lambda r: str(r["note"])),
]

SPACE_COLUMNS: list[Column] = [
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


PIPELINE_COLUMNS: list[Column] = [
    ("alias", lambda r: str(r["alias"])), ("class", lambda r: str(r["pipeline_class"])),
    ("default model", lambda r: str(r["default_model"])), ("denoiser", lambda r: str(r["denoiser"])),
    ("resolution", lambda r: "x".join(map(str, r["resolution"]))),  # type: ignore[call-overload]
    ("weights", lambda r: ", ".join(r["weights"])),  # type: ignore[arg-type]
]
COMPONENT_COLUMNS: list[Column] = [
    ("component", lambda r: str(r["component"])), ("class", lambda r: str(r["class"])),
    ("parameters", lambda r: f"{r['parameters']:,}"),
]


ACCELERATOR_COLUMNS: list[Column] = [
    ("name", lambda r: str(r["name"])),
    ("applies to", lambda r: str(r["applies_to"])),
    ("parameters (→ more aggressive)", lambda r: ", ".join(
            p["name"] + {"larger": " ↑", "smaller": " ↓"}.get(p["aggressive"], "") for p in r["params"])),  # type: ignore[attr-defined,index]
    ("speed depends on weights", lambda r: "yes" if r["speed_depends_on_weights"] else "no"),
    ("packages", lambda r: ", ".join(f"{k} {v}" for k, v in r["packages"].items())),  # type: ignore[attr-defined]
]


def status_text(counts: dict[str, object]) -> str:
    def by_status(values: object) -> str:
        return ", ".join(f"{k} {v}" for k, v in dict(values).items()) or "none"  # type: ignore[call-overload]

    speed, quality = counts["speed"], counts["quality"]
    lines = [f"base configurations: {counts['base_configs']}",
             f"speed: {speed['baselines']} baseline(s), trials {by_status(speed['trials'])}, {speed['precise']} timed precisely"
             + (f", {speed['below_leader']} settled below the leader" if speed.get("below_leader") else ""),  # type: ignore[index,union-attr]
             f"quality: {quality['baselines']} baseline(s), trials {by_status(quality['trials'])}"]  # type: ignore[index]
    if counts["tasks"]:
        lines.append(f"queued tasks: {by_status(counts['tasks'])}")
    return "\n".join(lines)


def summary_text(space_name: str, summary: object, searches: bool) -> str:
    """What a one-process run measured (a RunSummary), and each search's log when a strategy searched."""
    s = summary
    lines = []
    if searches:
        for label, result in s.searches:  # type: ignore[attr-defined]
            lines.append(f"{label} ({result.strategy}: {result.evaluated} evaluated, {result.stop})")
            lines.extend(f"  {line}" for line in result.log)
    overhead = (f" (wall / generation time = {s.wall_seconds / s.generation_seconds:.2f})"  # type: ignore[attr-defined]
                if s.generation_seconds else "")  # type: ignore[attr-defined]
    lines.append(f"{space_name}: {s.new} new, {s.stored} stored, {s.failed} failed, {s.rejected} rejected early, "  # type: ignore[attr-defined]
                 f"{s.precise} timed precisely"  # type: ignore[attr-defined]
                 + (f" ({s.below_leader} of them settled below the leader)" if s.below_leader else "")  # type: ignore[attr-defined]
                 + f"; {s.images} images in {s.wall_seconds:.1f} s{overhead}")  # type: ignore[attr-defined]
    if s.canary:  # type: ignore[attr-defined]
        lines.append(s.canary)  # type: ignore[attr-defined]
    if s.budget_stop:  # type: ignore[attr-defined]
        lines.append(f"stopped early: {s.budget_stop}")  # type: ignore[attr-defined]
    return "\n".join(lines)


def _grade_speedup(r: dict[str, object]) -> str:
    e = r["evaluation_results"]
    if e["actual_speedup"] is None:  # type: ignore[index]
        return "-"
    low, high = e["speedup_interval"] or (None, None)  # type: ignore[index]
    return f"{e['actual_speedup']:.2f}x" + (f" [{low:.2f}, {high:.2f}]" if low is not None else "")  # type: ignore[index]


def _grade_verdict(r: dict[str, object]) -> str:
    e = r["evaluation_results"]
    verdict = {True: "passed", False: "failed", None: "speed only"}[e["passed"]]  # type: ignore[index]
    if e["failure_reason"]:  # type: ignore[index]
        verdict += f": {e['failure_reason']}"  # type: ignore[index]
    if e["borderline"]:  # type: ignore[index]
        verdict += " (borderline)"
    return verdict


def _grade_notes(r: dict[str, object]) -> str:
    e = r["evaluation_results"]
    notes = [str(e["error"])] if e["error"] else []  # type: ignore[index]
    notes += [str(f) for f in e["flags"] if str(f).startswith("review")]  # type: ignore[index]
    if r.get("environment_note"):
        notes.append(str(r["environment_note"]))
    return "; ".join(notes)[:200]


GRADE_COLUMNS: list[Column] = [
    ("task", lambda r: str(r["prompt_id"])),
    ("difficulty", lambda r: str(r["difficulty"])),
    ("target", lambda r: f"{r['target_speedup']:g}x" if r["target_speedup"] is not None else "-"),
    ("speed-up [95% CI]", _grade_speedup),
    ("loss", lambda r: "unknown" if r["evaluation_results"]["quality_loss"] is None  # type: ignore[index]
     else f"{100 * r['evaluation_results']['quality_loss']:.2f}%"),  # type: ignore[index]
    ("verdict", _grade_verdict),
    ("notes", _grade_notes),
]


def grade_report_text(report: dict[str, object]) -> str:
    """The report's numbers: pass rates overall and by difficulty, hard tasks' achievement, failures by reason."""
    s, by, fails = report["summary"], report["by_difficulty"], report["failure_analysis"]  # type: ignore[index]
    lines = [f"{s['total_passed']} of {s['total_tasks']} passed ({100 * s['overall_pass_rate']:.0f}%)"  # type: ignore[index]
             + (f"; {s['speed_only']} graded for speed only" if s["speed_only"] else "")  # type: ignore[index]
             + (f"; {s['flagged_for_review']} flagged for review" if s["flagged_for_review"] else "")]  # type: ignore[index]
    for name, row in by.items():  # type: ignore[attr-defined]
        if row["total"]:
            extra = f", mean achievement {row['avg_achievement_rate']:.2f}" if "avg_achievement_rate" in row else ""
            lines.append(f"  {name}: {row['passed']}/{row['total']} ({100 * row['pass_rate']:.0f}%){extra}")
    failed = ", ".join(f"{k.removesuffix('_count')} {v}" for k, v in fails.items() if v)  # type: ignore[attr-defined]
    lines.append(f"  failures: {failed or 'none'}")
    return "\n".join(lines)
