#!/usr/bin/env python3
"""Benchmark the speed model on a GPU: price rows before they are measured, then measure them.

1. measure SD1.5 (random weights, fp16, 512²) / DDIM / 20 and 50 with DeepCache 3, 5, 10 and ToMe 0.5;
2. ``sweep space show --estimate`` prices SD1.5 / DDIM / 25 and DPM-Solver++ / 25 from what (1) stored;
3. measure those two rows;
4. price them again: each setting's measured time beside the prediction made before it was measured (2), and
   beside the leave-one-out prediction from everything else stored.

Every step is sweep's own CLI on one database. Writes ``speed-model.md`` and ``speed-model.json`` to ``--out``.

    python scripts/gpu_speed_model.py --out results/
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

SPACE = """
name = "speed-model-{name}"
combine = false
[protocol]
prompts = "bundled"
num_prompts = 1
timing_prompts = 1
scorer = "ViT-B-32"
scorer_pretrained = "random"
warmup_cap = 4
min_pairs = 4
max_pairs = 10
target_half_width = 0.03
[pipelines."{pipeline}"]
weights = "random"
[[base]]
pipelines = ["{pipeline}"]
schedulers = [{schedulers}]
steps = [{steps}]
dtype = "{dtype}"
batch_size = 1
[accelerators.deepcache]
cache_interval = [3, 5, 10]
cache_branch_id = [0]
[accelerators.tome]
ratio = [0.5]
max_downsample = [1]
"""


def sweep(*args: str) -> subprocess.CompletedProcess[str]:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sweep", *args], capture_output=True, text=True)
    print(f"$ sweep {' '.join(args)}  ({time.perf_counter() - began:.0f} s, exit {done.returncode})", flush=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], flush=True)
        raise SystemExit(done.returncode)
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--pipeline", default="SD1.5")
    parser.add_argument("--dtype", default="float16")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{(args.out / 'speed-model.db').resolve()}"
    measured = args.out / "measured.toml"
    fresh = args.out / "fresh.toml"
    measured.write_text(SPACE.format(pipeline=args.pipeline, dtype=args.dtype, name="measured", schedulers='"DDIMScheduler"', steps="20, 50"))
    fresh.write_text(SPACE.format(pipeline=args.pipeline, dtype=args.dtype, name="fresh", schedulers='"DDIMScheduler", "DPMSolverMultistepScheduler"', steps="25"))
    run = ["--db", db, "--device", args.device, "--quiet", "--confirm-top", "1"]
    sweep("upbound", str(measured), *run)
    before = json.loads(sweep("space", "show", str(fresh), "--estimate", "--db", db, "--format", "json").stdout)
    (args.out / "estimate-before.json").write_text(json.dumps(before, indent=1))
    began = time.perf_counter()
    sweep("upbound", str(fresh), *run)
    fresh_seconds = time.perf_counter() - began
    after = json.loads(sweep("space", "show", str(fresh), "--estimate", "--db", db, "--format", "json").stdout)
    seen = json.loads(sweep("space", "show", str(measured), "--estimate", "--db", db, "--format", "json").stdout)
    (args.out / "estimate-after.json").write_text(json.dumps({"fresh": after, "measured": seen}, indent=1))

    lines = ["| row | setting | measured s/image (kind) | predicted before measured | leave-one-out |", "| --- | --- | --- | --- | --- |"]
    for b, a in zip(before, after, strict=True):
        row = f"{args.pipeline} / {a['scheduler']} / {a['steps']}"
        lines.append(f"| {row} | baseline | {a['measured_baseline_s']:.4f} | "
                     + (f"{b['baseline_s']:.4f} ({b['baseline_s'] / a['measured_baseline_s'] - 1:+.1%})" if b["baseline_s"] else
                        f"none: {b['note']}") + " | - |")
        for c in a.get("checks", []):
            early = (b.get("predictions") or {}).get(c["setting"])
            lines.append(f"| {row} | {c['setting']} | {c['measured_s']:.4f} ({c['kind']}) | "
                         + (f"{early:.4f} ({early / c['measured_s'] - 1:+.1%})" if early else "none") + " | "
                         + (f"{c['predicted_s']:.4f} ({c['predicted_s'] / c['measured_s'] - 1:+.1%})" if c["predicted_s"] else "none")
                         + " |")
    for r in seen:
        for c in r.get("checks", []):
            lines.append(f"| {args.pipeline} / {r['scheduler']} / {r['steps']} (step 1) | {c['setting']} | {c['measured_s']:.4f} "
                         f"({c['kind']}) | - | " + (f"{c['predicted_s']:.4f} ({c['predicted_s'] / c['measured_s'] - 1:+.1%})"
                                                    if c["predicted_s"] else "none") + " |")
    priced = [f"| {args.pipeline} / {b['scheduler']} / {b['steps']} | {b['study_s']:.0f} s |" if b["study_s"] else
              f"| {args.pipeline} / {b['scheduler']} / {b['steps']} | none ({b['note']}) |" for b in before]
    text = "\n".join(["Predicted speed-study seconds before step 3:", "", "| row | predicted |", "| --- | --- |", *priced, "",
                      f"Step 3 took {fresh_seconds:.0f} s of wall time (both rows, including loading).", "", *lines])
    print(text)
    (args.out / "speed-model.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
