#!/usr/bin/env python3
"""Issue 22's benchmark: the same reference rows measured with the protocol of the day the issue was filed and
with today's, in one run on one GPU (random weights, speed only).

- **old**: sweep as it was when the issue was filed (commit 2537b9e, unpacked into ``--old-tree``): one timing-set
  pass of the baseline, each setting's first estimate a pass of its own compared with it, precise timing of the
  contenders.
- **new**: this checkout: paired first estimates, settings shared between rows of schedulers with the same denoiser
  calls, the canary, precise timings that stop below the leader stored as such.

Rows run one after the other, each protocol on its own database, the order of the two protocols alternating
from row to row (a drift of the machine falls on both). Before the new protocol measures a row, ``sweep space show
--estimate`` prices it from what the new database already holds (a prediction made before the measurement).
The new protocol's commands log every timed call
(``runs-<row>.jsonl``: seconds, setting, garbage collections and CUDA allocations inside the call). Everything is
written to ``--out`` after every command (``protocols.json``), so a run cut by its time limit keeps
what it measured; ``--deadline`` starts no row after that many seconds. The databases stay in ``--out``: the
predictions made after the run (leave-one-out) are read from them with ``sweep space show --estimate --environment``
on any machine.

    python scripts/gpu_protocols.py --old-tree .old-protocol --out results/ --rows sd15-ddim-20,sd15-ddim-25
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = {  # name: (pipeline, scheduler, steps, methods)
    "sd15-ddim-20": ("SD1.5", "DDIMScheduler", 20, "sd"),
    "sd15-ddim-25": ("SD1.5", "DDIMScheduler", 25, "sd"),
    "sd15-dpm-25": ("SD1.5", "DPMSolverMultistepScheduler", 25, "sd"),
    "sd15-ddim-50": ("SD1.5", "DDIMScheduler", 50, "sd"),
    "sdxl-ddim-20": ("SDXL", "DDIMScheduler", 20, "sdxl"),
    "pixart-dpm-20": ("PixArt-α", "DPMSolverMultistepScheduler", 20, "pixart"),
    "tiny-ddim-4": ("tiny-sd-a", "DDIMScheduler", 4, "sd"),  # a dry run of the script on a CPU
    "tiny-dpm-4": ("tiny-sd-a", "DPMSolverMultistepScheduler", 4, "sd"),
}
DEEPCACHE_TOME = """
[accelerators.deepcache]
cache_interval = [3, 5, 10]
cache_branch_id = [0]
[accelerators.tome]
ratio = [0.5]
max_downsample = [{max_downsample}]
"""
METHODS = {  # a subset of the reference preset's settings of each kind of row (SDXL's ToMe as the preset's)
    "sd": DEEPCACHE_TOME.format(max_downsample=1),
    "sdxl": DEEPCACHE_TOME.format(max_downsample=2),
    "pixart": """
[accelerators.tgate]
gate_step = [10, 15]
sp_interval = [3, 5]
fi_interval = [1]
warm_up = [2]
""",
}
GROUPS = {  # rows of one pipeline measured by one command (one pipeline load per protocol), as a user runs them
    "sd15": ["sd15-ddim-20", "sd15-ddim-25", "sd15-dpm-25", "sd15-ddim-50"],
    "tiny": ["tiny-ddim-4", "tiny-dpm-4"],
}
SPACE = """
name = "{name}"
combine = {combine}
[protocol]
prompts = "bundled"
num_prompts = {prompts}
timing_prompts = {prompts}
max_pairs = {max_pairs}
scorer = "ViT-B-32"
scorer_pretrained = "random"
[pipelines."{pipeline}"]
weights = "random"
{bases}
{methods}"""
BASE = """[[base]]
pipelines = ["{pipeline}"]
schedulers = ["{scheduler}"]
steps = [{steps}]
dtype = "{dtype}"
batch_size = 1
"""
SUMMARY = re.compile(r"(?P<new>\d+) new, (?P<stored>\d+) stored, (?P<failed>\d+) failed, (?P<rejected>\d+) rejected early, "
                     r"(?P<precise>\d+) timed precisely(?: \((?P<below>\d+) of them settled below the leader\))?; "
                     r"(?P<images>\d+) images in (?P<run>[\d.]+) s(?: \(wall / generation time = (?P<overhead>[\d.]+)\))?")


def sweep(tree: Path, *args: str, run_log: Path | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), *filter(None, [os.environ.get("PYTHONPATH")])]),
               PYTHONUNBUFFERED="1")
    if run_log is not None:  # every timed call of this command, one JSON line each (sweep.measurement.measure.RunLog)
        env["SWEEP_RUN_LOG"] = str(run_log)
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sweep", *args], capture_output=True, text=True, env=env, cwd=tree)
    seconds = time.perf_counter() - began
    print(f"$ [{tree.name}] sweep {' '.join(args)}  ({seconds:.0f} s, exit {done.returncode})", flush=True)
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-3000:], flush=True)
    return done, seconds


def speeds(db: Path) -> list[dict[str, object]]:
    """Every stored setting speed with its row (read with sqlite3: the two protocols' schemas differ)."""
    with sqlite3.connect(db) as c:
        c.row_factory = sqlite3.Row
        columns = {r[1] for r in c.execute("PRAGMA table_info(sweep_speed_trials)")}
        stop = "t.precise_stop" if "precise_stop" in columns else "NULL"
        spread = "t.first_pairs, t.first_log_sd" if "first_log_sd" in columns else "NULL AS first_pairs, NULL AS first_log_sd"
        host = "t.precise_host" if "precise_host" in columns else "NULL AS precise_host"
        rows = c.execute(f"""SELECT c.pipeline, c.scheduler, c.steps, t.setting_key, t.status, t.first_speedup,
            t.first_ci_half_width, t.first_source, t.speedup, t.ci_half_width, t.pairs, t.time, t.baseline_time,
            t.warmup_runs, {stop} AS precise_stop, {spread}, {host}
            FROM sweep_speed_trials t JOIN sweep_speed_configs c ON c.id = t.speed_config_id ORDER BY t.id""").fetchall()
        return [dict(r) for r in rows]


def baselines(db: Path) -> list[dict[str, object]]:
    with sqlite3.connect(db) as c:
        c.row_factory = sqlite3.Row
        return [dict(r) for r in c.execute("""SELECT c.pipeline, c.scheduler, c.steps, b.time, b.time_spread, b.source
            FROM sweep_speed_baselines b JOIN sweep_speed_configs c ON c.id = b.speed_config_id ORDER BY b.id""")]


def host() -> dict[str, object]:
    """The machine's CPUs: what a CPU-bound timing depends on."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), None) if Path("/proc/cpuinfo").exists() else None
    return {"cpu_model": model, "cpus": os.cpu_count(), "load_avg": os.getloadavg()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old-tree", type=Path, required=True, help="sweep at commit 2537b9e (sweep/, search_space/, storage/)")
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--rows", default=",".join(ROWS), help=f"rows or groups of rows ({', '.join(GROUPS)}), comma-separated")
    parser.add_argument("--prompts", type=int, default=4, help="timing prompts (and quality prompts) per row")
    parser.add_argument("--max-pairs", type=int, default=40, help="the protocol's cap on a precise timing's pairs (both protocols)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--deadline", type=float, default=540.0, help="start no row after this many seconds")
    parser.add_argument("--first", choices=["old", "new"], default="old", help="which protocol measures the first row first")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    trees = {"old": args.old_tree.resolve(), "new": ROOT}
    dbs = {p: (args.out / f"{p}.db").resolve() for p in trees}
    report: dict[str, object] = {"rows": [], "device": None, "host": host(), "prompts": args.prompts,
                                 "max_pairs": args.max_pairs}
    try:
        import torch

        report["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        report["torch"] = torch.__version__
    except Exception as exc:  # noqa: BLE001
        report["device"] = f"unknown ({exc})"
    order = ["old", "new"] if args.first == "old" else ["new", "old"]

    def save() -> None:
        """Everything measured so far: after every command, so a call cut by its time limit keeps it."""
        report["elapsed_s"] = time.perf_counter() - began
        for protocol, db in dbs.items():
            if db.exists():
                report[f"{protocol}_speeds"] = speeds(db)
                report[f"{protocol}_baselines"] = baselines(db)
        (args.out / "protocols.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")

    save()
    for index, name in enumerate(args.rows.split(",")):
        if time.perf_counter() - began > args.deadline:
            report["stopped"] = f"deadline reached before {name}"
            break
        members = GROUPS.get(name, [name])
        pipeline, _, _, kind = ROWS[members[0]]
        dtype = "float32" if pipeline.startswith("tiny") else "float16"
        bases = "".join(BASE.format(pipeline=pipeline, scheduler=ROWS[m][1], steps=ROWS[m][2], dtype=dtype) for m in members)
        space = (args.out / f"{name}.toml").resolve()
        space.write_text(SPACE.format(name=name, combine="true" if kind != "pixart" else "false", pipeline=pipeline,
                                      prompts=args.prompts, max_pairs=args.max_pairs, bases=bases, methods=METHODS[kind]), encoding="utf-8")
        row: dict[str, object] = {"row": name, "members": [ROWS[m] for m in members]}
        report["rows"].append(row)  # type: ignore[union-attr]
        if dbs["new"].exists():
            priced, _ = sweep(trees["new"], "space", "show", str(space), "--estimate", "--db", f"sqlite:///{dbs['new']}",
                              "--format", "json")
            row["estimate_before"] = json.loads(priced.stdout) if priced.returncode == 0 else priced.stderr[-500:]
            save()
        for protocol in order if index % 2 == 0 else order[::-1]:
            done, seconds = sweep(trees[protocol], "upbound", str(space), "--db", f"sqlite:///{dbs[protocol]}",
                                  "--device", args.device, "--format", "json",
                                  run_log=(args.out / f"runs-{name}.jsonl").resolve() if protocol == "new" else None)
            found = SUMMARY.search(done.stderr)
            row[protocol] = {
                "exit": done.returncode, "wall_s": seconds,
                "bound": json.loads(done.stdout) if done.returncode == 0 else done.stderr[-1000:],
                "summary": found.group(0) if found else None,
                "images": int(found["images"]) if found else None,
                "precise": int(found["precise"]) if found else None,
                "below_leader": int(found["below"] or 0) if found else None,
                "run_s": float(found["run"]) if found else None,
                "generation_s": float(found["run"]) / float(found["overhead"]) if found and found["overhead"] else None,
                "canary": [line for line in done.stderr.splitlines() if line.startswith("canary:")],
            }
            save()
    print(f"done in {time.perf_counter() - began:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
