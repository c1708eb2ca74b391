"""Benchmark: is a precise speed-up reproducible? Run the same small sweep twice and compare per-setting speed-ups.

Usage: python scripts/bench_repeatability.py [--device cuda] [--steps 20] [--num-prompts 4] [--out FILE]

Two independent runs (fresh databases, the pipeline loaded anew) of SD1.5's architecture with random
weights (speed only) over a handful of DeepCache / ToMe settings, every setting timed precisely (paired).
Prints, per setting, the speed-up of run 1 and run 2 and their relative difference, and each run's
overhead ratio (wall time / summed generation time). Targets: median |difference| ≤ 2%, worst ≤ 5%,
overhead ≤ 1.15.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import sweep._compat  # noqa: F401
from storage import Repository
from storage.models import SpeedTrialRow
from sweep.measurement.environment import Environment
from sweep.reporting.output import settings_text
from sweep.study.catalogue import parse_space
from sweep.study.runner import Runner

SPACE = """
name = "repeatability"
combine = false

[protocol]
prompts = "bundled"
num_prompts = {num_prompts}
scorer = "ViT-g-14"
scorer_pretrained = "random"

[pipelines."SD1.5"]
weights = "random"

[[base]]
pipelines = ["SD1.5"]
schedulers = ["DDIMScheduler"]
steps = [{steps}]
dtype = "float16"
batch_size = 1

[accelerators.deepcache]
cache_interval = [2, 3, 5]

[accelerators.tome]
ratio = [0.5]
"""


def run_once(space_text: str, device: str, folder: Path, index: int) -> tuple[dict[str, float], float, float]:
    import tomllib

    space = parse_space(tomllib.loads(space_text), "bench_repeatability")
    repo = Repository(f"sqlite:///{folder / f'run{index}.db'}")
    summary = Runner(repo, device).run(space, precise_every=True)
    with repo.session() as s:
        speedups = {settings_text(t.settings): t.speedup for t in s.query(SpeedTrialRow).filter(SpeedTrialRow.speedup.is_not(None))}
    return speedups, summary.wall_seconds / summary.generation_seconds, summary.wall_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--num-prompts", type=int, default=4)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    text = SPACE.format(steps=args.steps, num_prompts=args.num_prompts)
    with tempfile.TemporaryDirectory() as tmp:
        first, overhead1, wall1 = run_once(text, args.device, Path(tmp), 1)
        second, overhead2, wall2 = run_once(text, args.device, Path(tmp), 2)
    diffs = {k: (second[k] - first[k]) / first[k] for k in first if k in second}
    lines = [
        f"# Repeatability of paired speed-ups: SD1.5 architecture (random weights), DDIM {args.steps} steps, "
        f"512x512 fp16, batch 1, {args.num_prompts} prompts",
        f"device: {Environment.detect(args.device).device}",
        "",
        "| setting | run 1 | run 2 | difference |",
        "| --- | --- | --- | --- |",
        *(f"| {k} | {first[k]:.3f}x | {second[k]:.3f}x | {100 * d:+.2f}% |" for k, d in diffs.items()),
        "",
        f"median |difference| = {100 * statistics.median(abs(d) for d in diffs.values()):.2f}% (target ≤ 2%), "
        f"worst = {100 * max(abs(d) for d in diffs.values()):.2f}% (target ≤ 5%)",
        f"overhead (wall / generation): run 1 = {overhead1:.3f} ({wall1:.0f} s), run 2 = {overhead2:.3f} "
        f"({wall2:.0f} s) (target ≤ 1.15)",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
