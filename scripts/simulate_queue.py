#!/usr/bin/env python3
"""Replay a measured study's queue for 1, 2, 4 and 8 workers under the former and the current claim order
(sweep.study.simulate), and check the simulation against the multi-GPU run it came from.

    python scripts/simulate_queue.py docs/measurements/2026-11-26-h100x2-multi-gpu-run3.json

The workload is the one-GPU run's timeline (its tasks ran one after the other). What the timeline does not split
is set from it as follows, and printed:
- a pipeline build: SDXL's is the gap before its first baseline less its next baselines' mean; SD1.5's is scaled
  from it by the pipelines' parameter counts (random-weight builds initialise every parameter);
- start-up (imports, CUDA): the first finish less SD1.5's build and its next baselines' mean;
- start-up contention: from the two-GPU run's first finish (two workers starting at once), solved for the slowdown
  (one parameter taken from the run the simulation is then checked against: the check is of everything else);
- each configuration's cost (the claim order's most-expensive-first): its baseline's gap, as the queue uses a
  stored baseline's seconds per image (a baseline's gap is its seconds for the timing set, in proportion).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sweep.study.simulate import ORDERS, from_timeline, simulate  # noqa: E402

PARAMETERS = {"SD1.5": 1_066_235_307, "SDXL": 3_468_837_547}  # unet + text encoders + vae (sweep pipelines --build)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--out", type=Path, help="write the table (markdown) here too")
    parser.add_argument("--replicate", type=int, default=1,
                        help="the study's configurations K times over (new configurations, the same tasks): how the "
                             "ratio grows with a study's size (an extrapolation, not a measurement)")
    args = parser.parse_args()
    run = json.loads(args.run.read_text(encoding="utf-8"))
    one, many = run["one"], run["many"]
    rows = one["rows"]
    pipelines = {i + 1: r["pipeline"] for i, r in enumerate(rows)}  # base ids follow the space's order
    timeline = one["timeline"]
    gaps: dict[int, list[float]] = {}
    previous = 0.0
    for t in timeline:
        if t["kind"] == "baseline":
            gaps.setdefault(t["base"], []).append(t["done_s"] - previous)
        previous = t["done_s"]
    first_base = {p: min(b for b in pipelines if pipelines[b] == p) for p in set(pipelines.values())}
    later = {p: statistics.fmean(g[0] for b, g in gaps.items() if pipelines[b] == p and b != first_base[p])
             for p in first_base}
    build = {"SDXL": gaps[first_base["SDXL"]][0] - later["SDXL"]}
    build["SD1.5"] = build["SDXL"] * PARAMETERS["SD1.5"] / PARAMETERS["SDXL"]
    startup = gaps[first_base["SD1.5"]][0] - build["SD1.5"] - later["SD1.5"]
    first_many = many["timeline"][0]["done_s"]
    contention = (first_many - later["SD1.5"] - build["SD1.5"]) / startup - 1.0
    # the queue's own cost: measured seconds per image once a baseline is stored (the one-GPU run's baseline gaps),
    # as every task but a configuration's baseline is queued or claimed after it
    cost = {b: statistics.fmean(gaps[b]) if b not in first_base.values() else later[pipelines[b]] for b in pipelines}
    workload = from_timeline(timeline, pipelines, cost, build, startup, contention)
    if args.replicate > 1:
        import dataclasses

        from sweep.study.simulate import SimTask

        step_id, step_scope = max(t.id for t in workload.tasks), max(pipelines)
        tasks = [SimTask(t.id + k * step_id, t.scope + k * step_scope, t.kind, t.seconds)
                 for k in range(args.replicate) for t in workload.tasks]
        workload = dataclasses.replace(
            workload, tasks=tuple(tasks),
            pipeline={s + k * step_scope: p for k in range(args.replicate) for s, p in pipelines.items()},
            cost={s + k * step_scope: c for k in range(args.replicate) for s, c in cost.items()})
    print(f"builds: {', '.join(f'{p} {s:.1f} s' for p, s in build.items())}; start-up {startup:.1f} s; "
          f"start-up contention {contention:.2f} per other worker; {len(workload.tasks)} tasks, "
          f"{sum(t.seconds for t in workload.tasks):.1f} s of work")
    counts = [int(n) for n in args.workers.split(",")]
    results = {order: {n: simulate(workload, n, order) for n in counts} for order in ORDERS}
    lines = ["| workers | former order: makespan s | ratio | current order: makespan s | ratio | busy (current) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for n in counts:
        f, c = results["former"][n], results["current"][n]
        lines.append(f"| {n} | {f.makespan:.1f} | {results['former'][1].makespan / f.makespan:.2f}x | {c.makespan:.1f} | "
                     f"{results['current'][1].makespan / c.makespan:.2f}x | "
                     f"{', '.join(f'{b:.0%}' for b in c.busy)} |")
    if args.replicate > 1:
        text = "\n".join(lines + ["", f"(the study's {len(pipelines)} configurations {args.replicate} times over: "
                                       "an extrapolation)"])
        print(text)
        if args.out:
            args.out.write_text(text + "\n", encoding="utf-8")
        return 0
    measured = one["queue_s"] / many["queue_s"]
    predicted = results["former"][1].makespan / results["former"][2].makespan if 2 in counts else float("nan")
    check = (f"measured (former order, {len(many['devices'].split(','))} GPUs against 1): queue spans "
             f"{one['queue_s']:.1f} s / {many['queue_s']:.1f} s = {measured:.2f}x; simulated {predicted:.2f}x "
             f"({(predicted / measured - 1) * 100:+.1f}%); one-worker makespan simulated "
             f"{results['former'][1].makespan:.1f} s against {one['queue_s']:.1f} s measured")
    text = "\n".join(lines + ["", check])
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
