#!/usr/bin/env python3
"""Summarise run logs (``SWEEP_RUN_LOG``, one JSON line per timed call): per setting, its calls' seconds, the CPU
time this process spent in them, the garbage collections inside them and the CUDA device allocations; and how
much of the calls' spread the CPU time explains (a call that is slow in CPU time too ran on a slower CPU, not
behind a collection or an allocation, only where the probe says so: waiting for the GPU spins a CPU, so CPU time
follows wall time whatever is slow; ``cpu_probe_ms``, a fixed piece of Python work timed after each call, moves
only with the CPU's speed, and ``gpu_busy`` falls when the launch is what is slow). Logs written before the probe
show "—" for it.

    python scripts/run_log_report.py docs/measurements/2026-12-06-h100-noisy/slow/slow_calls.jsonl
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def name(label: str) -> str:
    if label == "baseline":
        return label
    methods = json.loads(label)
    return " + ".join(f"{m}(" + ", ".join(f"{k}={v}" for k, v in sorted(p.items()) if k in PRIMARY) + ")"
                      for m, p in methods.items())


def probe(rs: list[dict]) -> str:
    wall = [r["seconds"] / r["images"] for r in rs if r.get("cpu_probe_ms") is not None]
    ms = [r["cpu_probe_ms"] for r in rs if r.get("cpu_probe_ms") is not None]
    busy = [r["gpu_busy"] for r in rs if r.get("gpu_busy") is not None]
    corr = (f"{statistics.correlation(wall, ms):.2f}" if len(ms) > 2 and statistics.pstdev(ms) > 0
            and statistics.pstdev(wall) > 0 else "—")
    return (f"{statistics.median(ms):.2f} | {corr} | " if ms else "— | — | ") + \
        (f"{statistics.fmean(busy):.2f} |" if busy else "— |")


PRIMARY = {"cache_interval", "ratio", "gate_step", "sp_interval"}


def main(paths: list[str]) -> int:
    for path in paths:
        records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        print(f"\n{path}: {len(records)} timed calls (the first call of the process left out)\n")
        print("| what ran | calls | median s | sd s | max / median | CPU s / wall s | corr(wall, CPU) | "
              "collections | their pauses, ms (max) | CUDA allocations | CPU probe ms (median) | corr(wall, probe) | "
              "GPU busy |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        groups: dict[str, list[dict]] = {}
        for r in records[1:]:
            groups.setdefault(r["label"], []).append(r)
        for label, rs in groups.items():
            wall = [r["seconds"] / r["images"] for r in rs]
            cpu = [r["cpu_seconds"] / r["images"] for r in rs]
            med = statistics.median(wall)
            corr = statistics.correlation(wall, cpu) if len(rs) > 2 and statistics.pstdev(cpu) > 0 else float("nan")
            pauses = [r["gc_seconds"] for r in rs if r["gc_collections"]]
            print(f"| {name(label)} | {len(rs)} | {med:.3f} | {statistics.stdev(wall) if len(wall) > 1 else 0:.3f} | "
                  f"{max(wall) / med:.2f} | {statistics.fmean(c / w for c, w in zip(cpu, wall)):.2f} | {corr:.2f} | "
                  f"{sum(r['gc_collections'] for r in rs)} | {1000 * sum(pauses):.1f} ({1000 * max(pauses, default=0):.1f}) | "
                  f"{sum(r.get('num_device_alloc', 0) for r in rs)} | {probe(rs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
