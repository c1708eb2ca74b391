#!/usr/bin/env python3
"""Issue 22's benchmark tables from what ``scripts/gpu_protocols.py`` wrote (``protocols.json``, ``old.db``,
``new.db`` in one folder), as Markdown on stdout: run totals per protocol, each row's bound under both protocols
and whether they agree within their intervals, first-estimate error against the same setting's precise timing,
the speed model's predictions against the measured times (leave-one-out, from the new database), and the whole
reference speed map extrapolated from the measured rows' costs.

    python scripts/protocols_report.py results/
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * x:+.{digits}f}%"


def rows_of(speeds: list[dict]) -> dict[tuple[str, str, int], list[dict]]:
    out: dict[tuple[str, str, int], list[dict]] = {}
    for s in speeds:
        out.setdefault((s["pipeline"], s["scheduler"], s["steps"]), []).append(s)
    return out


def describe(key: str) -> str:
    from search_space.setting import AccelSetting
    from sweep.accelerators import describe as said

    return said(AccelSetting.from_key(key))


def bound(trials: list[dict]) -> dict | None:
    """The row's published bound: the fastest precise timing that did not stop below the leader."""
    precise = [t for t in trials if t["speedup"] is not None and t.get("precise_stop") != "below leader"]
    return max(precise, key=lambda t: t["speedup"], default=None)


def first_errors(trials: list[dict]) -> list[tuple[dict, float]]:
    """(trial, first estimate / precise − 1) for every setting timed both ways to its own precision."""
    return [(t, t["first_speedup"] / t["speedup"] - 1) for t in trials
            if t["first_speedup"] and t["speedup"] and t.get("precise_stop") != "below leader"]


SIDE = {"SD2.1": ("SD1.5", (768 * 768) / (512 * 512)), "PixArt-Σ": ("PixArt-α", 1.0)}
"""Pipelines the benchmark does not time, priced from a timed one: (that pipeline, per-image cost factor). SD2.1
at 768² from SD1.5 at 512² by its pixels (the UNets are alike); PixArt-Σ as PixArt-α (one transformer, 1024²)."""


def precise_seconds(trials: list[dict]) -> float:
    """Generation seconds of a row's precise timings: each side's pairs and the warm-up runs. Timings made together
    (``precise_host["group"]``: an id, the rounds run) pay one baseline run per round of the group, at their longest
    member's baseline time; a timing made alone pays its own."""
    groups: dict[object, list[dict]] = {}
    for t in trials:
        if t.get("pairs") and t.get("time") and t.get("baseline_time"):
            host = t.get("precise_host")
            host = json.loads(host) if isinstance(host, str) else (host or {})
            t = {**t, "group": host.get("group")}
            groups.setdefault(t["group"]["id"] if t["group"] else id(t), []).append(t)
    total = 0.0
    for group in groups.values():
        longest = max(group, key=lambda t: t["pairs"])
        rounds = group[0]["group"]["rounds"] if group[0]["group"] else longest["pairs"]
        total += sum(t["pairs"] * t["time"] + (t["warmup_runs"] or 0) * t["time"] for t in group)
        total += rounds * longest["baseline_time"]
    return total


def extrapolate(report: dict) -> None:
    """The whole reference speed map's cost from the measured rows, per protocol, printed with its assumptions.

    A row's cost in baseline images: its command's generation seconds / its baseline's seconds per image, split
    into its precise timings (pairs × both sides' seconds + the warm-up runs, from the database) and the rest
    (speed baseline and first estimates). Rows are of two kinds: *own* (the first scheduler measured at its
    pipeline and steps: every setting timed) and *shared* (another scheduler with the same denoiser calls: the new
    protocol shares first estimates, the old one measures every setting again). A reference row costs the mean
    units of its kind measured on its pipeline (else on any pipeline): the rest scaled by its settings count over
    the measured row's (first estimates scale with it), the precise timings as measured (a speed map times its
    leader and what overlaps it, however many settings it has); times its baseline's seconds per image: measured,
    else the same pipeline's per-step time × steps, else ``SIDE``'s factor. A shared row of a pipeline whose
    shared rows were not timed costs its own row times the shared/own ratio timed on other pipelines. Older
    reports (no per-timing seconds) scale every unit with the settings count, which over-prices.

    Wall time is priced as one ``sweep upbound`` process measuring every row: the generation above, plus each
    row's own overhead as its runner measured it (``run_s`` minus its generation: the pipeline's build, which one
    process pays once per pipeline and the benchmark's one command per row pays on every row, so this over-prices,
    the database, the scheduler's swap), plus one process start (a command's wall minus its runner's). Reports
    without ``run_s`` scale the command's whole wall like the generation, paying a process start and a load on
    every row."""
    from sweep.study.catalogue import load_preset

    measured: dict[str, dict[tuple[str, str, int], dict]] = {"old": {}, "new": {}}
    for row in report["rows"]:
        if len(row["members"]) != 1:
            continue  # a command of several rows: no cost per row
        pipeline, scheduler, steps, _ = row["members"][0]
        for protocol in ("old", "new"):
            r = row.get(protocol)
            base = [b for b in report.get(f"{protocol}_baselines", [])
                    if (b["pipeline"], b["scheduler"], b["steps"]) == (pipeline, scheduler, steps)]
            if r and r.get("generation_s") and base:
                trials = [t for t in report.get(f"{protocol}_speeds", [])
                          if (t["pipeline"], t["scheduler"], t["steps"]) == (pipeline, scheduler, steps)]
                per_image = base[0]["time"]
                precise = precise_seconds(trials) / per_image
                run_s = r.get("run_s")
                measured[protocol][(pipeline, scheduler, steps)] = {
                    "units": r["generation_s"] / per_image - precise, "wall_units": r["wall_s"] / per_image - precise,
                    "precise_units": precise, "per_image": per_image, "settings": len({t["setting_key"] for t in trials}),
                    "overhead_s": run_s - r["generation_s"] if run_s is not None else None,
                    "start_s": r["wall_s"] - run_s if run_s is not None else None}
    if not measured["new"]:
        return
    space = load_preset("reference")
    seen: set[tuple[str, int]] = set()
    reference = []
    for e in space.entries:
        b = e.base
        kind = "shared" if (b.pipeline, b.steps) in seen else "own"
        seen.add((b.pipeline, b.steps))
        reference.append((b.pipeline, b.scheduler, b.steps, kind, len(e.settings) - 1))
    print("\nThe whole reference speed map (31 rows, random weights), extrapolated from the rows measured here "
          "(assumptions in `scripts/protocols_report.py: extrapolate`):\n")
    print("| protocol | rows priced | of them from a row of their own pipeline | generation min | wall min (one process: loads, database, start) | rows not priced (no timed row of their pipeline) |")
    print("|---|---:|---:|---:|---:|---|")
    for protocol, rows in measured.items():
        if not rows:
            continue
        first_of = {}
        for key in rows:
            first_of.setdefault((key[0], key[2]), key)
        kinds = {k: ("shared" if first_of[(k[0], k[2])] != k else "own") for k in rows}
        def per_setting(k: tuple[str, str, int]) -> float:
            return (rows[k]["units"] + rows[k]["precise_units"]) / max(rows[k]["settings"], 1)

        # a shared row's cost against its own row's, where a pipeline had both timed: applied to pipelines that had
        # only an own row timed (without it, their shared rows would be priced as own rows)
        ratios = [per_setting(k) / statistics.fmean(per_setting(o) for o in rows if o[0] == k[0] and kinds[o] == "own")
                  for k in rows if kinds[k] == "shared"]
        shared_ratio = statistics.fmean(ratios) if ratios else 1.0
        gen = wall = 0.0
        direct = priced = 0
        unpriced: set[str] = set()
        for pipeline, scheduler, steps, kind, settings in reference:
            source, factor = (pipeline, 1.0) if any(k[0] == pipeline for k in rows) else SIDE.get(pipeline, (pipeline, 1.0))
            timed = {k: v for k, v in rows.items() if k[0] == source}
            if not timed:
                unpriced.add(pipeline)
                continue
            priced += 1
            direct += source == pipeline
            same = [v for k, v in timed.items() if kinds[k] == kind]
            scale = 1.0
            if not same:
                same, scale = list(timed.values()), (shared_ratio if kind == "shared" else 1.0)
            units = scale * statistics.fmean(v["units"] * settings / max(v["settings"], 1) + v["precise_units"] for v in same)
            wall_units = scale * statistics.fmean(v["wall_units"] * settings / max(v["settings"], 1) + v["precise_units"]
                                                  for v in same)
            per_step = statistics.fmean(v["per_image"] / k[2] for k, v in timed.items())
            per_image = rows[(source, scheduler, steps)]["per_image"] if (source, scheduler, steps) in rows else per_step * steps
            gen += units * per_image * factor
            overheads = [v["overhead_s"] for v in same]
            if all(o is not None for o in overheads):  # one process: the row's runner overhead, not a process start
                wall += units * per_image * factor + statistics.fmean(overheads)  # type: ignore[arg-type]
            else:
                wall += wall_units * per_image * factor
        starts = [v["start_s"] for v in rows.values()]
        if all(s is not None for s in starts):
            wall += statistics.fmean(starts)  # type: ignore[arg-type]
        print(f"| {protocol} | {priced} of {len(reference)} | {direct} | {gen / 60:.0f} | {wall / 60:.0f} | "
              f"{', '.join(sorted(unpriced)) or '—'} |")
        if ratios:
            print(f"|  | (a shared row cost {shared_ratio:.2f}x an own row per setting, from {len(ratios)} timed) | | | | |")


def load(folder: Path) -> dict:
    sys.path.insert(0, str(ROOT / "scripts"))
    from gpu_protocols import speeds

    summary = folder / "protocols.json"
    if summary.exists():
        report = json.loads(summary.read_text(encoding="utf-8"))
    else:  # a run cut before its first row was written: what the databases hold
        report = {"device": "unknown (no protocols.json)", "rows": [], "stopped": "cut before protocols.json was written"}
    for protocol in ("old", "new"):  # the databases, read with today's columns (the summary may predate some)
        if (folder / f"{protocol}.db").exists():
            report[f"{protocol}_speeds"] = speeds(folder / f"{protocol}.db")
    return report


def coverage(new: dict[tuple[str, str, int], list[dict]]) -> None:
    """The new protocol's first-estimate intervals, each row's judged by its pooled noise (``storage.measurements
    .row_noise``) beside each estimate's own: how wide, and how often they hold the same setting's precise timing."""
    from storage.measurements import SpeedResult, row_noise

    own, pooled = [], []
    for trials in new.values():
        results = {t["setting_key"]: SpeedResult(
            t["setting_key"], t["status"], None, "random", t["first_speedup"], t["first_ci_half_width"], t["first_source"],
            None, None, t["speedup"], t["ci_half_width"], t["pairs"], precise_stop=t.get("precise_stop"),
            first_pairs=t.get("first_pairs"), first_log_sd=t.get("first_log_sd")) for t in trials if t["first_speedup"]}
        for s in row_noise(results).values():
            if s.speedup is None or s.settled_below:
                continue
            own.append((s.first_ci_half_width or 0.0, s.first_speedup, s.speedup))
            if s.row_half_width is not None:
                pooled.append((s.row_half_width, s.first_speedup, s.speedup))
    if not own:
        return
    print("\nThe new protocol's first-estimate intervals (settings also timed to their own precision):\n")
    print("| interval | settings | median half-width | holds the precise speed-up |")
    print("|---|---:|---:|---:|")
    for name, rows in (("own pairs", own), ("row's pooled noise", pooled)):
        if rows:
            held = sum(first * (1 - h) <= precise <= first * (1 + h) for h, first, precise in rows)
            print(f"| {name} | {len(rows)} | ±{100 * statistics.median(h for h, _, _ in rows):.0f}% | {held} of {len(rows)} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+", help="one folder per device call (their rows are joined)")
    args = parser.parse_args()
    report = {"rows": [], "elapsed_s": 0.0}
    devices, notes = [], []
    for folder in args.folders:
        part = load(folder)
        devices.append(f"{part['device']}, torch {part.get('torch')}, {part.get('prompts', '?')} timing prompts, "
                       f"max {part.get('max_pairs', '?')} pairs, CPU {(part.get('host') or {}).get('cpu_model')} "
                       f"× {(part.get('host') or {}).get('cpus')}")
        notes += [f"{folder.name}: {part['stopped']}"] if part.get("stopped") else []
        report["rows"] += part["rows"]
        report["elapsed_s"] += part.get("elapsed_s", 0.0)
        for k in ("old_speeds", "new_speeds", "old_baselines", "new_baselines"):
            report[k] = report.get(k, []) + part.get(k, [])
    for folder, device in zip(args.folders, devices, strict=True):
        print(f"- {folder.name}: GPU **{device}**")
    print(f"\n{report['elapsed_s']:.0f} s in all" + (f"; {'; '.join(notes)}" if notes else "") + "\n")

    print("| command (rows) | protocol | wall s | generation s | images | precise timings | of them stopped below the leader |")
    print("|---|---|---:|---:|---:|---:|---:|")
    totals = {"old": [0.0, 0.0, 0], "new": [0.0, 0.0, 0]}
    for row in report["rows"]:
        members = ", ".join(f"{p} / {s.replace('Scheduler', '')} / {n}" for p, s, n, _ in row["members"])
        for protocol in ("old", "new"):
            r = row.get(protocol)
            if not r:
                continue
            print(f"| {row['row']} ({members}) | {protocol} | {r['wall_s']:.0f} | {r['generation_s'] or 0:.0f} | "
                  f"{r['images']} | {r['precise']} | {r['below_leader'] if protocol == 'new' else 'n/a (stored as precise)'} |")
            if row.get("old") and row.get("new"):  # totals over commands both protocols finished (a cut call)
                totals[protocol][0] += r["wall_s"]
                totals[protocol][1] += r["generation_s"] or 0.0
                totals[protocol][2] += r["images"] or 0
    for protocol, (wall, gen, images) in totals.items():
        print(f"| **all** (commands both ran) | {protocol} | {wall:.0f} | {gen:.0f} | {images} | | |")
    ratio = totals["old"][1] / totals["new"][1] if totals["new"][1] else None
    print(f"\nGeneration time, old / new: **{ratio:.2f}x**\n" if ratio else "")

    old, new = rows_of(report.get("old_speeds", [])), rows_of(report.get("new_speeds", []))
    print("| row | old bound | new bound | new timing | agree within intervals |")
    print("|---|---|---|---|---|")
    for key in sorted(set(old) | set(new)):
        b_old, b_new = bound(old.get(key, [])), bound(new.get(key, []))

        def said(b: dict | None) -> str:
            return "—" if b is None else f"{describe(b['setting_key'])}: {b['speedup']:.2f}x ±{100 * (b['ci_half_width'] or 0):.1f}%"

        agree = "—"
        if b_old and b_new:
            gap = abs(b_old["speedup"] - b_new["speedup"])
            reach = b_old["speedup"] * (b_old["ci_half_width"] or 0) + b_new["speedup"] * (b_new["ci_half_width"] or 0)
            agree = f"{'yes' if gap <= reach else 'NO'} (gap {gap:.2f}x, intervals reach {reach:.2f}x)"
        shared = sum(1 for t in new.get(key, []) if (t["first_source"] or "").startswith("shared"))
        print(f"| {key[0]} / {key[1].replace('Scheduler', '')} / {key[2]} | {said(b_old)} | {said(b_new)} | "
              f"{b_new['precise_stop'] if b_new else '—'}{f'; {shared} settings shared' if shared else ''} | {agree} |")

    print("\nFirst estimate against the same setting's precise timing (settings timed both ways, to their own precision):\n")
    print("| protocol | settings | within ±10% | median abs error | largest over | largest under |")
    print("|---|---:|---:|---:|---:|---:|")
    for protocol, rows in (("old", old), ("new", new)):
        errors = [e for trials in rows.values() for _, e in first_errors(trials)]
        if not errors:
            continue
        within = sum(abs(e) <= 0.10 for e in errors)
        print(f"| {protocol} | {len(errors)} | {within} ({100 * within / len(errors):.0f}%) | "
              f"{100 * statistics.median(abs(e) for e in errors):.1f}% | {pct(max(errors))} | {pct(min(errors))} |")
    shared_errors = [e for trials in new.values() for t, e in first_errors(trials) if (t["first_source"] or "").startswith("shared")]
    if shared_errors:
        print(f"\nOf the new protocol's, the {len(shared_errors)} shared from another scheduler's row: "
              f"{sum(abs(e) <= 0.10 for e in shared_errors)} within ±10%, median abs {100 * statistics.median(abs(e) for e in shared_errors):.1f}%.")

    coverage(new)
    for db in (folder / "new.db" for folder in args.folders if (folder / "new.db").exists()):
        from storage import Repository
        from sweep.measurement.speed_model import SpeedModel

        repo = Repository(f"sqlite:///{db.resolve()}")
        observations = repo.measurements.speed_observations()
        model = SpeedModel(observations)
        pairs = [(o, model.leave_one_out(o)) for o in observations if o.settings]
        scored = [(o, p / o.time - 1) for o, p in pairs if p]
        print(f"\nSpeed model, leave-one-out (each setting's time predicted from every other observation of its family, "
              f"new database): {len(scored)} of {len(pairs)} settings predicted")
        if scored:
            print("\n| row | settings predicted | within ±10% | median abs error | largest over | largest under |")
            print("|---|---:|---:|---:|---:|---:|")
            by: dict[tuple[str, str, int], list[float]] = {}
            for o, e in scored:
                by.setdefault((o.pipeline, o.scheduler, o.steps), []).append(e)
            for key, errors in sorted(by.items()):
                within = sum(abs(e) <= 0.10 for e in errors)
                print(f"| {key[0]} / {key[1].replace('Scheduler', '')} / {key[2]} | {len(errors)} | {within} | "
                      f"{100 * statistics.median(abs(e) for e in errors):.1f}% | {pct(max(errors))} | {pct(min(errors))} |")
            every = [e for _, e in scored]
            print(f"| **all** | {len(every)} | {sum(abs(e) <= 0.10 for e in every)} | "
                  f"{100 * statistics.median(abs(e) for e in every):.1f}% | {pct(max(every))} | {pct(min(every))} |")
        repo.close()
    extrapolate(report)
    for row in report["rows"]:
        before = row.get("estimate_before")
        if isinstance(before, list) and row.get("new", {}).get("generation_s"):
            priced = [r for r in before if r.get("study_s")]
            if priced:
                print(f"\nPriced before it ran ({row['row']}): {sum(r['study_s'] for r in priced):.0f} s predicted for "
                      f"{len(priced)} of {len(before)} rows; measured {row['new']['generation_s']:.0f} s of generation.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
