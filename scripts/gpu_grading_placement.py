#!/usr/bin/env python3
"""Why does the grader read a CPU-bound solution slower than a bare loop does? Process placement, measured.

The grader times the baseline and the solution in two child processes (the baseline's lives for a whole task,
each solution's is new). At batch 1 a CPU-bound method (T-GATE on PixArt) depends on where its process runs.
This script, in one run on one GPU:

1. times the solution against the baseline in a bare loop in this process (``gpu_grading.bare_loop``);
2. for each placement (``unpinned``: both children free to run anywhere; ``pinned``: both on the same few
   cores), starts one baseline child and ``--fresh`` solution children one after another, and times pairs
   exactly as the grader does (the other side stopped, round trip of the request, images included), recording
   per call the child's CPU seconds and the core its process was last on.

If the solution's seconds per image vary from one fresh child to the next while the baseline's stay put, the
processes' placement is a difference between the two sides that pairing cannot remove.

    python scripts/gpu_grading_placement.py --config pixart --solution tgate-10-5 --out results/
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_grading as lib  # noqa: E402

import sweep._compat  # noqa: E402,F401


def proc_stat(pid: int) -> tuple[float, int]:
    """(user + system CPU seconds, the core it last ran on) of a process, from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, int(fields[36])


def host() -> dict[str, object]:
    info: dict[str, object] = {"affinity": sorted(os.sched_getaffinity(0)), "cpu_count": os.cpu_count()}
    nodes = sorted(Path("/sys/devices/system/node").glob("node[0-9]*"))
    info["numa_nodes"] = {n.name: (n / "cpulist").read_text().strip() for n in nodes}
    try:
        import subprocess

        bus = subprocess.run(["nvidia-smi", "--query-gpu=pci.bus_id", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30).stdout.strip().splitlines()[0].lower()
        local = Path(f"/sys/bus/pci/devices/{bus[4:] if len(bus) > 12 else bus}/local_cpulist")
        info["gpu_bus"], info["gpu_local_cpus"] = bus, local.read_text().strip() if local.exists() else None
    except (OSError, IndexError, ValueError) as exc:
        info["gpu_bus"] = f"unknown ({exc})"
    return info


def timed_pairs(base: object, solution: Path, prompts: list[str], cpus: list[int] | None, fresh: int, pairs: int,
                warm: int, device: str, log: Path, placement: str) -> list[dict[str, object]]:
    from sweep.grading.sandbox import Child

    options = {"use_resolution_binning": False, "clean_caption": False} if "PixArt" in base.pipeline else {}  # type: ignore[attr-defined]
    limit = 300.0
    baseline = Child(device, memory_bytes=64 * 2**30, request_seconds=limit, label="baseline", cpus=cpus)
    baseline.request({"op": "load", "base": dataclasses.asdict(base)}, limit)  # type: ignore[call-overload]
    runs = []
    seed = 5000
    try:
        for k in range(fresh):
            child = Child(device, memory_bytes=64 * 2**30, request_seconds=limit, label="solution", cpus=cpus)
            try:
                began = time.perf_counter()
                child.load_file(solution, limit, None)
                load_s = time.perf_counter() - began

                def call(side: Child, other: Child, prompt: str, s: int) -> dict[str, float]:
                    other.stop()
                    side.resume()
                    cpu0, _ = proc_stat(side.pid)
                    side.request({"op": "generate", "prompts": [prompt], "seeds": [s], "steps": base.steps,  # type: ignore[attr-defined]
                                  "height": base.height, "width": base.width, "options": options})  # type: ignore[attr-defined]
                    cpu1, core = proc_stat(side.pid)
                    return {"seconds": side.last_seconds, "cpu": cpu1 - cpu0, "core": core}

                for side, other in ((baseline, child), (child, baseline)):
                    for _ in range(warm):
                        call(side, other, prompts[0], seed)
                        seed += 1
                rows = []
                for i in range(pairs):
                    prompt, seed = prompts[i % len(prompts)], seed + 1
                    order = [(baseline, child), (child, baseline)]
                    got = {}
                    for side, other in order if i % 2 == 0 else order[::-1]:
                        got[side is child] = call(side, other, prompt, seed)
                    rows.append({"baseline": got[False], "solution": got[True]})
                run = {"placement": placement, "cpus": cpus, "fresh": k, "load_seconds": load_s,
                       "baseline_s": statistics.fmean(r["baseline"]["seconds"] for r in rows),
                       "solution_s": statistics.fmean(r["solution"]["seconds"] for r in rows),
                       "speedup": statistics.median(r["baseline"]["seconds"] / r["solution"]["seconds"] for r in rows),
                       "baseline_cpu_per_call": statistics.fmean(r["baseline"]["cpu"] for r in rows),
                       "solution_cpu_per_call": statistics.fmean(r["solution"]["cpu"] for r in rows),
                       "baseline_cores": sorted({r["baseline"]["core"] for r in rows}),
                       "solution_cores": sorted({r["solution"]["core"] for r in rows}), "pairs": rows}
                runs.append(run)
                print(f"{placement} fresh {k}: baseline {run['baseline_s']:.3f} s (cpu {run['baseline_cpu_per_call']:.2f}), "
                      f"solution {run['solution_s']:.3f} s (cpu {run['solution_cpu_per_call']:.2f}), "
                      f"{run['speedup']:.3f}x, cores {run['baseline_cores']} / {run['solution_cores']}", flush=True)
                with log.open("a") as f:
                    f.write(json.dumps(run) + "\n")
            finally:
                baseline.resume()
                child.close()
    finally:
        baseline.close()
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(lib.CONFIGS), default="pixart")
    parser.add_argument("--solution", default="tgate-10-5")
    parser.add_argument("--fresh", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--warm", type=int, default=3)
    parser.add_argument("--bare-pairs", type=int, default=8)
    parser.add_argument("--pin", type=int, default=4, help="cores both children share when pinned")
    parser.add_argument("--placements", default="unpinned,pinned")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()

    import torch

    from sweep.measurement.prompts import load_prompts

    base = lib.CONFIGS[args.config]
    work = Path(tempfile.mkdtemp(prefix="sweep-placement-"))
    work.chmod(0o755)
    solution = work / f"{args.solution}.py"
    solution.write_text(lib.SOLUTIONS[args.config][args.solution].replace("{base!r}", repr(dataclasses.asdict(base))))
    solution.chmod(0o644)
    prompts = load_prompts("bundled", 3)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / f"placement-{args.config}.jsonl"
    info = host()
    info["gpu"] = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    print(json.dumps(info), flush=True)
    (args.out / f"placement-{args.config}-host.json").write_text(json.dumps(info))

    bare = lib.bare_loop(base, solution, prompts, args.bare_pairs, args.device)
    print(f"bare loop: {bare['speedup']:.3f}x (baseline {bare['baseline_time']:.3f} s, solution "
          f"{bare['accelerated_time']:.3f} s)", flush=True)
    with log.open("a") as f:
        f.write(json.dumps({"placement": "bare loop", **bare}) + "\n")
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    affinity = sorted(os.sched_getaffinity(0))
    for placement in args.placements.split(","):
        cpus = affinity[: args.pin] if placement == "pinned" else None
        timed_pairs(base, solution, prompts, cpus, args.fresh, args.pairs, args.warm, args.device, log, placement)
    return 0


if __name__ == "__main__":
    sys.exit(main())
