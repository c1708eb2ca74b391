"""Measure one row of the reference study on a GPU with random weights (speed only) and print its table.

Usage: python scripts/gpu_reference_row.py [--pipeline SD1.5 --scheduler DDIMScheduler --steps 50]
       [--num-prompts 4] [--db sqlite:///row.db] [--out row.md]

The row's base configuration and settings come from the `reference` preset; weights are switched to random
(no hub here) and prompts to the bundled set. Random weights measure speed only: every setting gets a first
estimate from the timing set, the fastest contenders a precise paired timing (``--every`` times every setting
precisely). Everything goes through sweep's own runner and storage.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time

import sweep._compat  # noqa: F401
from storage import Repository
from storage.models import SpeedTrialRow
from sweep.measurement.environment import Environment
from sweep.reporting.output import settings_text
from sweep.study.catalogue import load_preset


class PrintProgress:
    def __init__(self) -> None:
        self.done = 0
        self.total = 0
        self.started = time.perf_counter()

    def start(self, total: int) -> None:
        self.total = total

    def describe(self, text: str) -> None:
        print(f"[{self.done}/{self.total} {time.perf_counter() - self.started:6.1f}s] {text}", flush=True)

    def retotal(self, total: int) -> None:
        self.total = total

    def advance(self) -> None:
        self.done += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="SD1.5")
    parser.add_argument("--scheduler", default="DDIMScheduler")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--num-prompts", type=int, default=4)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--db", default="sqlite:///gpu_reference_row.db")
    parser.add_argument("--out", default=None, help="also write the table (markdown) here")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds; no new trial starts after it")
    parser.add_argument("--every", action="store_true", help="time every setting precisely, not only the contenders")
    args = parser.parse_args()

    from sweep.study.runner import Runner, SearchOptions

    reference = load_preset("reference")
    entries = [
        e for e in reference.entries
        if (e.base.pipeline, e.base.scheduler, e.base.steps) == (args.pipeline, args.scheduler, args.steps)
    ]
    if not entries:
        print(f"no reference row {args.pipeline} / {args.scheduler} / {args.steps}", file=sys.stderr)
        return 2
    entry = dataclasses.replace(entries[0], base=dataclasses.replace(entries[0].base, weights="random"))
    protocol = dataclasses.replace(
        reference.protocol, prompts="bundled", num_prompts=args.num_prompts, scorer_pretrained="random"
    )
    space = dataclasses.replace(reference, name="reference-row", protocol=protocol, entries=(entry,))

    repo = Repository(args.db)
    summary = Runner(repo, args.device, PrintProgress()).run(space, search=SearchOptions(time_budget=args.time_budget),
                                                             precise_every=args.every)
    env = Environment.detect(args.device)
    bounds = repo.bounds.rows(0.02, environment_ids=[summary.environment_id], speed_config_ids=summary.speed_config_ids)
    if not bounds:
        print(f"no baseline measured yet ({summary.budget_stop or 'nothing ran'}): run again on {args.db}")
        return 3
    (bound,) = bounds

    with repo.session() as s:
        trials = s.query(SpeedTrialRow).all()
        rows = sorted(
            ((t.speedup or t.first_speedup or 0.0, t, settings_text(t.settings)) for t in trials), key=lambda r: r[0],
            reverse=True,
        )
        total = len(entry.settings) - 1
    lines = [
        f"# {entry.base.label}, {entry.base.height}x{entry.base.width} {entry.base.dtype}, batch {entry.base.batch_size}, "
        f"random weights (speed only)",
        f"device: {env.device}; torch {env.libraries['torch']}, diffusers {env.libraries['diffusers']}, "
        f"python {platform.python_version()}; timing set of {space.protocol.timing_prompts} prompts; first estimate "
        f"(one pass, not interleaved) for every setting, precise paired timing (warm-up until stable, baseline and "
        f"accelerated runs interleaved, median of paired ratios, 95% CI) for " + ("every setting" if args.every else "the contenders"),
        f"baseline: {bound.baseline_time:.4f} s/image; {len(rows)} of {total} settings measured",
        "",
        "| setting | first estimate | precise speed-up | 95% CI | pairs | s/image | paired baseline s/image | status |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for _, t, text in rows:
        first = f"{t.first_speedup:.2f}x ±{100 * t.first_ci_half_width:.0f}%" if t.first_speedup else ""
        precise = f"{t.speedup:.2f}x" if t.speedup else ""
        lines.append(f"| {text} | {first} | {precise} | {'' if t.ci_half_width is None else f'±{100 * t.ci_half_width:.1f}%'} "
                     f"| {t.pairs or ''} | {'' if t.time is None else f'{t.time:.4f}'} | "
                     f"{'' if t.baseline_time is None else f'{t.baseline_time:.4f}'} | {t.status}{': ' + t.reason if t.reason else ''} |")
    lines += [
        "",
        f"{summary.new} measured, {summary.precise} timed precisely, {summary.images} images in {summary.wall_seconds:.1f} s; "
        f"wall / generation time = {summary.wall_seconds / max(summary.generation_seconds, 1e-9):.2f}",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
