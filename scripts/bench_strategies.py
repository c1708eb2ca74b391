"""Benchmark: how many trials does each strategy need to find the grid's upper bound?

Usage: python scripts/bench_strategies.py [--landscape tests/data/landscape-h100-sd15.json] [--metric image_deviation]
           [--thresholds 0.006,0.009,0.012] [--seeds 20] [--noise 0,1] [--out FILE]

Replays each strategy on a landscape measured once as a full grid (``scripts/measure_landscape.py``), by
lookup instead of generation, many times with different seeds, and reports per threshold: the trials each
needs before it has evaluated a setting within 1% of the grid's upper bound (median and worst, as counts and
as a share of the grid), how often it finds one at all before it stops, and how many trials it spends in
all. ``--noise K`` perturbs every looked-up speed-up by K times its measured 95% half-width (per seed), as a
re-measurement would. Goals: frontier ≤ 15% of the grid's trials, optuna ≤ 35%.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from sweep.study.strategies import Frontier, OptunaSearch
from sweep.study.strategies.replay import Landscape, replay


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landscape", default=str(Path(__file__).parent.parent / "tests" / "data" / "landscape-h100-sd15.json"))
    parser.add_argument("--metric", default=None, help="score_loss or image_deviation (default: score_loss when measured)")
    parser.add_argument("--thresholds", default=None, help="comma-separated; default: the metric's 25/50/75%% quantiles")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--noise", default="0,1")
    parser.add_argument("--patience", default="15", help="optuna patience values to compare, comma-separated")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    strategies = {"frontier": lambda: Frontier()}
    for patience in (int(p) for p in args.patience.split(",")):
        strategies[f"optuna (patience {patience})"] = lambda patience=patience: OptunaSearch(patience=patience)

    land = Landscape.load(args.landscape)
    metric = args.metric or ("score_loss" if any(p.losses.get("score_loss") is not None for p in land.points) else "image_deviation")
    values = [v for p in land.points if (v := land.loss(p, metric)) is not None]
    thresholds = ([float(t) for t in args.thresholds.split(",")] if args.thresholds
                  else [round(quantile(values, q), 4) for q in (0.25, 0.5, 0.75)])
    grid = len(land.points)
    meta = land.meta
    lines = [
        f"# Strategy replay on {meta.get('label')} ({meta.get('device')}, {meta.get('description') or ''})",
        f"grid: {grid} settings; constraint metric: {metric}"
        + ("" if meta.get("quality_meaningful") else " (random weights: speed-ups real, CLIP scores not)"),
        f"{args.seeds} seeds per row; found = evaluated a setting truly within the threshold and ≥ 99% of the grid's upper bound",
        "",
        "| threshold | grid bound | strategy | noise | found | trials to find: median | worst | spent: median | worst |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    started = time.perf_counter()
    for threshold in thresholds:
        bound = land.upper_bound(threshold, metric)
        for noise in (float(n) for n in args.noise.split(",")):
            for name, make in strategies.items():
                needed: list[int] = []
                spent: list[int] = []
                for seed in range(args.seeds):
                    r = replay(make, land, max_loss=threshold, seed=seed, metric=metric, noise=noise)
                    n = r.trials_to_find(land, threshold, metric)
                    spent.append(r.result.evaluated)
                    if n is not None:
                        needed.append(n)

                def pct(n: float) -> str:
                    return f"{n:g} ({100 * n / grid:.1f}%)"

                lines.append(
                    f"| {threshold:g} | {bound:.3f}x | {name} | {noise:g} | {len(needed)}/{args.seeds} | "
                    + (f"{pct(statistics.median(needed))} | {pct(max(needed))}" if needed else "- | -")
                    + f" | {pct(statistics.median(spent))} | {pct(max(spent))} |"
                )
    lines += ["", f"replayed in {time.perf_counter() - started:.0f} s"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
