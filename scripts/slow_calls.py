#!/usr/bin/env python3
"""Where do a setting's occasional slow calls come from? Issue 22's H100 run timed DeepCache 10 on SD1.5 with a
spread of 0.055 s per image where every other precise timing had 0.0006-0.002 s, twice, late in a process that
had switched many settings on and off. This script repeats that pattern in one process and logs every timed call
(``SWEEP_RUN_LOG``: seconds, garbage collections and their pauses, CUDA device allocations inside the call),
through sweep's own loader, generator and accelerators:

1. the baseline, ``--calls`` calls; 2. the setting held on, ``--calls`` calls; 3. the setting switched on and off
around every call, as a paired timing does (``--calls`` pairs); 4-5. phases 2-3 again after ``gc.freeze()`` (the
loaded pipeline's objects moved out of the collector's reach, so a full collection no longer walks them).

A call is *slow* when it takes more than 1.1x its phase's median. Prints one line per phase and writes
``slow_calls.json`` (the phases) beside the run log.

    SWEEP_RUN_LOG=$OUT/slow_calls.jsonl python scripts/slow_calls.py --out $OUT --pipeline SD1.5 --steps 25
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search_space.base_config import BaseConfig
from search_space.setting import AccelSetting
from sweep.accelerators import AppliedSetting
from sweep.measurement.measure import RUN_LOG_ENV, Generator
from sweep.measurement.speed_pass import switches
from sweep.pipelines.loader import load_pipeline
from sweep.pipelines.registry import PIPELINES


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pipeline", default="SD1.5")
    parser.add_argument("--scheduler", default="DPMSolverMultistepScheduler")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--setting", default='{"deepcache": {"cache_interval": 10, "cache_branch_id": 0}}')
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="float16")
    args = parser.parse_args()
    if not os.environ.get(RUN_LOG_ENV):
        os.environ[RUN_LOG_ENV] = str(args.out / "slow_calls.jsonl")
    args.out.mkdir(parents=True, exist_ok=True)
    info = PIPELINES[args.pipeline]
    height, width = info.resolution
    pipe = load_pipeline(BaseConfig(args.pipeline, info.default_model, "random", args.scheduler, args.steps, height, width,
                                    args.dtype, 1), args.device)
    gen = Generator(pipe, args.steps, height, width, args.device, options=PIPELINES[args.pipeline].call_options)
    batch = (["a photograph of an astronaut riding a horse"], [0])
    accelerate, restore = switches(gen, AppliedSetting(pipe, AccelSetting.of(json.loads(args.setting))))
    log = Path(os.environ[RUN_LOG_ENV])

    def calls(n: int, switch: bool) -> list[float]:
        seconds = []
        for _ in range(n):
            if switch:
                restore()
                gen.run(batch)  # the baseline side of the pair
            accelerate()
            seconds.append(gen.run(batch)[0])
        return seconds

    phases: dict[str, dict[str, object]] = {}

    def phase(name: str, run) -> None:
        start = len(log.read_text().splitlines()) if log.exists() else 0
        seconds = run()
        records = [json.loads(line) for line in log.read_text().splitlines()[start:]]
        mine = [r for r in records if r["label"] != "baseline"] or records
        median = statistics.median(seconds)
        slow = [r for r in mine if r["seconds"] > 1.1 * median]
        phases[name] = {"calls": len(seconds), "median": median, "mean": statistics.fmean(seconds),
                        "sd": statistics.stdev(seconds), "max": max(seconds), "slow": len(slow),
                        "slow_with_gc": sum(1 for r in slow if r["gc_collections"]),
                        "slow_with_cuda_alloc": sum(1 for r in slow if r.get("num_device_alloc", 0)),
                        "gc_seconds": sum(r["gc_seconds"] for r in mine),
                        "gc_collections": sum(r["gc_collections"] for r in mine),
                        "cuda_allocs": sum(r.get("num_device_alloc", 0) for r in mine)}
        p = phases[name]
        print(f"{name:28s} median {median:.4f} s  mean {p['mean']:.4f}  sd {p['sd']:.4f}  max {p['max']:.4f}  "
              f"slow {p['slow']}/{len(seconds)} (gc in {p['slow_with_gc']}, cudaMalloc in {p['slow_with_cuda_alloc']}); "
              f"gc {p['gc_collections']} collections {p['gc_seconds'] * 1000:.1f} ms; cudaMalloc {p['cuda_allocs']}", flush=True)

    restore()
    gen.run(batch)
    phase("baseline", lambda: [gen.run(batch)[0] for _ in range(args.calls)])
    phase("setting held on", lambda: calls(args.calls, False))
    phase("setting switched per call", lambda: calls(args.calls, True))
    restore()
    gc.collect()
    gc.freeze()
    phase("frozen: baseline", lambda: [gen.run(batch)[0] for _ in range(args.calls)])
    phase("frozen: setting held on", lambda: calls(args.calls, False))
    phase("frozen: setting switched", lambda: calls(args.calls, True))
    restore()
    (args.out / "slow_calls.json").write_text(json.dumps({"device": args.device, "setting": args.setting,
                                                          "pipeline": args.pipeline, "steps": args.steps, "phases": phases}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
