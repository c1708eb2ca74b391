"""GPU table of the transformer-era methods: T-GATE, cache-dit and PAB on PixArt-α/Σ, T-GATE and T-GATE +
DeepCache on SD1.5 and SDXL. Random weights, fp16, speed only, through sweep's runner and storage.

Usage: python scripts/gpu_accelerators.py pixart|sd [--device cuda] [--every] [--db URL] [--out FILE]

- pixart: PixArt-α and PixArt-Σ × DPM-Solver++ × 20/25 steps, 1024²: T-GATE (gate_step 8 and 15, sp_interval 3),
  PAB (spatial_skip 2 and 4), cache-dit DBCache (threshold 0.1, Fn 8; flagged: its speed depends on the weights).
- sd: SD1.5 (512²) and SDXL (1024²) × DDIM × 25 steps: T-GATE (gate_step 10, sp_interval 5), DeepCache
  (cache_interval 3), and both (T-GATE's own DeepCache loader).
- cache-dit: PixArt-α × DPM-Solver++ × 25 steps with DBCache thresholds that skip steps on random weights (its
  speed depends on the weights: these figures say what the method costs and saves when it skips, no more).

Every setting gets a first estimate; the contenders (``--every``: every setting) a precise paired timing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from importlib import metadata

import sweep._compat  # noqa: F401
from storage import Repository
from storage.models import SpeedBaselineRow, SpeedConfigRow, SpeedTrialRow
from sweep.measurement.environment import Environment
from sweep.reporting.output import settings_text
from sweep.study.catalogue import parse_space
from sweep.study.runner import Runner

PROTOCOL = """
[protocol]
prompts = "bundled"
num_prompts = 2
timing_prompts = 2
scorer_pretrained = "random"
warmup_cap = 4
min_pairs = 4
max_pairs = 16
target_half_width = 0.03
"""

SPACES = {
    "pixart": """
name = "gpu-pixart"
combine = true
{protocol}
[pipelines."PixArt-α"]
weights = "random"

[pipelines."PixArt-Σ"]
weights = "random"

[[base]]
pipelines = ["PixArt-α", "PixArt-Σ"]
schedulers = ["DPMSolverMultistepScheduler"]
steps = [20, 25]
dtype = "float16"

[accelerators.tgate]
gate_step = [8, 15]
sp_interval = [3]

[accelerators.pab]
spatial_skip = [2, 4]

[accelerators.cache_dit]
residual_diff_threshold = [0.1]
Fn_compute_blocks = [8]
""",
    "cache-dit": """
name = "gpu-cache-dit"
combine = true
{protocol}
[pipelines."PixArt-α"]
weights = "random"

[[base]]
pipelines = ["PixArt-α"]
schedulers = ["DPMSolverMultistepScheduler"]
steps = [25]
dtype = "float16"

[accelerators.cache_dit]
residual_diff_threshold = [0.3, 0.6]
Fn_compute_blocks = [8]
""",
    "sd": """
name = "gpu-sd"
combine = true
{protocol}
[pipelines."SD1.5"]
weights = "random"

[pipelines."SDXL"]
weights = "random"

[[base]]
pipelines = ["SD1.5", "SDXL"]
schedulers = ["DDIMScheduler"]
steps = [25]
dtype = "float16"

[accelerators.tgate]
gate_step = [10]
sp_interval = [5]

[accelerators.deepcache]
cache_interval = [3]
cache_branch_id = [0]
""",
}

# T-GATE v2's own figures (README of the tgate package, NVIDIA 1080 Ti, pretrained weights, its default settings)
PUBLISHED = {"PixArt-α": "1.68x", "PixArt-Σ": "1.66x", "SDXL": "1.68x"}


class PrintProgress:
    def start(self, total: int) -> None:
        print(f"{total} measurements", flush=True)

    def retotal(self, total: int) -> None:
        pass

    def describe(self, text: str) -> None:
        print(text, flush=True)

    def advance(self) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("group", choices=sorted(SPACES))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--every", action="store_true", help="time every setting precisely")
    parser.add_argument("--db", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    space = parse_space(tomllib.loads(SPACES[args.group].format(protocol=PROTOCOL)), f"gpu_accelerators:{args.group}")
    repo = Repository(args.db or f"sqlite:///gpu-{args.group}.db")
    summary = Runner(repo, args.device, PrintProgress()).run(space, precise_every=args.every)
    env = Environment.detect(args.device)
    lines = [
        f"# {space.name}: random weights, fp16, batch 1, speed only (timing set of 2 prompts)",
        f"device: {env.device}; torch {env.libraries['torch']}, diffusers {env.libraries['diffusers']}, "
        f"tgate {metadata.version('tgate')}, cache-dit {metadata.version('cache-dit')}",
        "",
        "| base configuration | baseline s/image | setting | first estimate | precise speed-up | pairs | note |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    with repo.session() as s:
        baselines = {(b.speed_config_id, b.environment_id): b for b in s.query(SpeedBaselineRow).all()}
        configs = {c.id: c for c in s.query(SpeedConfigRow).all()}
        trials = sorted(s.query(SpeedTrialRow).all(), key=lambda t: (t.speed_config_id, -(t.speedup or t.first_speedup or 0)))
        for t in trials:
            c = configs[t.speed_config_id]
            b = baselines[(t.speed_config_id, t.environment_id)]
            first = f"{t.first_speedup:.2f}x ±{100 * t.first_ci_half_width:.0f}%" if t.first_speedup else "-"
            precise = f"{t.speedup:.2f}x ±{100 * t.ci_half_width:.1f}%" if t.speedup else "-"
            note = t.reason or ("speed depends on the weights: random-weight figure" if t.weights_key == "random" else "")
            lines.append(f"| {c.pipeline} / {c.scheduler.removesuffix('Scheduler')} / {c.steps} | {b.time:.3f} | "
                         f"{settings_text(t.settings)} | {first} | {precise} | {t.pairs or ''} | {note} |")
    lines += [
        "",
        "T-GATE's published speed-ups (v2, NVIDIA 1080 Ti, pretrained weights): "
        + ", ".join(f"{k} {v}" for k, v in PUBLISHED.items()),
        f"{summary.new} measured, {summary.precise} timed precisely, {summary.images} images in {summary.wall_seconds:.0f} s "
        f"(wall / generation = {summary.wall_seconds / max(summary.generation_seconds, 1e-9):.2f})",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    rows = [b.as_row() for b in repo.bounds.rows(0.02, environment_ids=[summary.environment_id], weight_dependent=True)]
    print(json.dumps([{k: r[k] for k in ("pipeline", "steps", "speedup", "settings", "timing")} for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
