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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    summary = args.folder / "protocols.json"
    if summary.exists():
        report = json.loads(summary.read_text(encoding="utf-8"))
    else:  # a run cut before its first row was written: what the databases hold
        sys.path.insert(0, str(ROOT / "scripts"))
        from gpu_protocols import speeds

        report = {"device": "unknown (no protocols.json)", "rows": [], "stopped": "cut before protocols.json was written"}
        for protocol in ("old", "new"):
            if (args.folder / f"{protocol}.db").exists():
                report[f"{protocol}_speeds"] = speeds(args.folder / f"{protocol}.db")
    print(f"GPU: **{report['device']}**, torch {report.get('torch')}; {report.get('elapsed_s', 0):.0f} s in all"
          + (f"; {report['stopped']}" if report.get("stopped") else "") + "\n")

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
            totals[protocol][0] += r["wall_s"]
            totals[protocol][1] += r["generation_s"] or 0.0
            totals[protocol][2] += r["images"] or 0
    for protocol, (wall, gen, images) in totals.items():
        print(f"| **all** | {protocol} | {wall:.0f} | {gen:.0f} | {images} | | |")
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

    db = args.folder / "new.db"
    if db.exists():
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
