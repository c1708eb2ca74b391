"""Benchmark: one study on several GPUs through the shared queue, against the same study on one GPU.

Usage (on a machine with two GPUs): python scripts/gpu_multi.py --devices cuda:0,cuda:1 [--out FILE]

1. A private PostgreSQL is started from the system's binaries or the ``pgserver`` wheel (as scripts/test does;
   as root, a ``postgres`` user is created for it where none exists). Without one, SQLite is used, and said.
2. The space below (full-size SD1.5 and SDXL architectures with random weights: speed only) is run with
   ``sweep upbound SPACE --devices cuda:0,cuda:1`` on a new database, then with ``--devices cuda:0`` on another.
   Wall time is the command's; tasks per minute count the queue's finished tasks over the span from the first
   task queued to the last one finished (the queue's own timestamps).
3. Every key is checked to be stored once (speed records and tasks); the bounds of the two runs are compared
   within their confidence intervals.
4. A third run (SD1.5 only, two GPUs) kills the worker process that holds a setting's task mid-trial (SIGKILL);
   the task must end done, finished by the other worker after the lease expired.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import os
import pwd
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage.models import SpeedTrialRow, TaskRow  # noqa: E402

SPACE = """
name = "{name}"
combine = false

[protocol]
num_prompts = 2
timing_prompts = 2
scorer_pretrained = "random"
min_pairs = 6
max_pairs = 16

{overrides}
[[base]]
pipelines = {pipelines}
schedulers = {schedulers}
steps = [{steps}]

[accelerators.deepcache]
cache_interval = [3, 5]

[accelerators.tome]
ratio = [0.5]
"""


def postgres(folder: Path) -> tuple[object, str] | None:
    """A private PostgreSQL (its context manager and admin URL), or None."""
    try:
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                subprocess.run(["useradd", "-r", "-M", "postgres"], check=True, capture_output=True)
        loader = importlib.machinery.SourceFileLoader("sweep_test_runner", str(ROOT / "scripts" / "test"))
        runner = loader.load_module()
        context = runner.private_postgres()
        url = context.__enter__()
        return context, url
    except (Exception, SystemExit) as exc:  # noqa: BLE001 — report and fall back to SQLite
        print(f"no PostgreSQL here ({exc}); using SQLite", file=sys.stderr)
        return None


def database(admin_url: str | None, name: str, folder: Path) -> str:
    if admin_url is None:
        return f"sqlite:///{folder / name}.db"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def upbound(space: Path, url: str, devices: str, lease: int, kill_mid_trial: bool = False) -> dict[str, object]:
    command = [sys.executable, "-m", "sweep", "upbound", str(space), "--db", url, "--devices", devices,
               "--quiet", "--format", "json", "--lease", str(lease), "--confirm-top", "1"]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    killed: dict[str, object] = {}
    if kill_mid_trial:
        engine = create_engine(url)
        seen: dict[tuple[int, str], float] = {}
        while process.poll() is None and not killed:
            try:
                with engine.connect() as c:
                    running = c.execute(select(TaskRow.id, TaskRow.lease_owner).where(
                        TaskRow.status == "running", TaskRow.kind == "setting")).all()
            except DBAPIError:  # the schema is not created yet
                running = []
            now = time.perf_counter()
            for task_id, owner in running:
                held = seen.setdefault((task_id, owner), now)
                if owner and now - held >= 1.0:  # still held by the same worker 1 s on: mid-trial
                    os.kill(int(owner.rsplit(":", 1)[1]), signal.SIGKILL)
                    killed = {"task_id": task_id, "owner": owner, "after_s": round(now - started, 1)}
                    break
            time.sleep(0.25)
        engine.dispose()
    out, _ = process.communicate()
    wall = time.perf_counter() - started
    rows = json.loads(out) if out.strip() else []
    engine = create_engine(url)
    with engine.connect() as c:
        by_status = dict(c.execute(select(TaskRow.status, func.count()).group_by(TaskRow.status)).all())
        first, last = c.execute(select(func.min(TaskRow.created_at), func.max(TaskRow.updated_at))).one()
        key = (SpeedTrialRow.speed_config_id, SpeedTrialRow.environment_id, SpeedTrialRow.timing_protocol_id,
               SpeedTrialRow.setting_key)
        duplicate_speeds = c.execute(select(*key).group_by(*key).having(func.count() > 1)).all()
        task_key = (TaskRow.base_config_id, TaskRow.environment_id, TaskRow.kind, TaskRow.setting_key)
        duplicate_tasks = c.execute(select(*task_key).group_by(*task_key).having(func.count() > 1)).all()
        speed_records = c.scalar(select(func.count()).select_from(SpeedTrialRow))
        timeline = [{"id": t.id, "kind": t.kind, "base": t.base_config_id, "attempts": t.attempts,
                     "done_s": round((t.updated_at - first).total_seconds(), 1)}
                    for t in c.execute(select(TaskRow).order_by(TaskRow.updated_at)).all()]
        workers = dict(c.execute(select(SpeedTrialRow.worker, func.count()).group_by(SpeedTrialRow.worker)).all())
        if killed:
            task = c.execute(select(TaskRow).where(TaskRow.id == killed["task_id"])).one()
            finisher = c.execute(select(SpeedTrialRow.worker).where(SpeedTrialRow.setting_key == task.setting_key)).scalars().all()
            killed.update(status=task.status, attempts=task.attempts, finished_by=finisher)
    engine.dispose()
    span = (last - first).total_seconds()
    done = by_status.get("done", 0)
    return {"devices": devices, "returncode": process.returncode, "wall_s": wall, "queue_s": span, "tasks": by_status,
            "tasks_per_min": 60 * done / span if span else None, "speed_records": speed_records,
            "duplicate_speed_keys": len(duplicate_speeds), "duplicate_task_keys": len(duplicate_tasks),
            "rows": rows, "killed": killed, "timeline": timeline, "speed_records_by_worker": workers}


def _bound(r: dict[str, object]) -> str:
    return f"{r['speedup']:.2f}x ±{100 * float(r['ci_half_width'] or 0):.1f}%" if r["speedup"] else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="cuda:0,cuda:1")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--pipelines", default="SD1.5,SDXL", help="Aliases (random weights); the kill run uses the first.")
    parser.add_argument("--kill-steps", type=int, default=40, help="Steps of the kill run: long enough to be caught mid-trial.")
    parser.add_argument("--lease", type=int, default=20)
    parser.add_argument("--schedulers", default="DDIMScheduler,DPMSolverMultistepScheduler")
    parser.add_argument("--skip-kill", action="store_true", help="Only the throughput comparison.")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sweep-multi-"))
    pg = postgres(folder)
    admin = pg[1] if pg else None
    space = folder / "space.toml"
    aliases = args.pipelines.split(",")
    overrides = "".join(f'[pipelines."{a}"]\nweights = "random"\n\n' for a in aliases)
    space.write_text(SPACE.format(name="multi", pipelines=json.dumps(aliases), overrides=overrides,
                                  schedulers=json.dumps(args.schedulers.split(",")), steps=args.steps),
                     encoding="utf-8")
    space_kill = folder / "kill.toml"
    space_kill.write_text(SPACE.format(name="kill", pipelines=json.dumps(aliases[:1]), overrides=overrides,
                                       schedulers='["DDIMScheduler"]', steps=args.kill_steps), encoding="utf-8")
    devices = args.devices.split(",")
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (dry run)"
    results = {}
    try:
        for label, devs in (("many", args.devices), ("one", devices[0])):
            results[label] = upbound(space, database(admin, f"multi_{label}", folder), devs, args.lease)
            print(json.dumps({k: v for k, v in results[label].items() if k not in ("rows", "timeline")}), flush=True)
        results["kill"] = {"killed": {}, "tasks": {}, "returncode": None, "wall_s": 0.0, "duplicate_speed_keys": "-",
                           "duplicate_task_keys": "-"} if args.skip_kill else upbound(space_kill, database(admin, "multi_kill", folder), args.devices, args.lease,
                                  kill_mid_trial=True)
        print(json.dumps({k: v for k, v in results["kill"].items() if k not in ("rows", "timeline")}), flush=True)
    finally:
        if pg:
            pg[0].__exit__(None, None, None)  # type: ignore[attr-defined]

    many, one = results["many"], results["one"]
    lines = [
        f"# {len(devices)} GPUs against 1 on one study: {gpu}",
        "",
        f"`python scripts/gpu_multi.py {' '.join(sys.argv[1:])}` — database: "
        f"{'PostgreSQL (private server on the GPU machine)' if admin else 'SQLite'}; torch {torch.__version__}.",
        f"Space: {', '.join(aliases)} (random weights: speed only) × {', '.join(args.schedulers.split(','))} × {args.steps} "
        "steps; DeepCache 3 and 5, ToMe 0.5, one at a time; 2 timing prompts, 6–16 pairs, confirm-top 1.",
        "",
        "| GPUs | wall s | queue s | tasks done | tasks / min | speed records | duplicate keys |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in (many, one):
        lines.append(f"| {r['devices']} | {r['wall_s']:.1f} | {r['queue_s']:.1f} | {r['tasks'].get('done', 0)} | "  # type: ignore[union-attr]
                     f"{r['tasks_per_min']:.1f} | {r['speed_records']} | {r['duplicate_speed_keys']} + {r['duplicate_task_keys']} |")
    ratio = many["tasks_per_min"] / one["tasks_per_min"]  # type: ignore[operator]
    lines += ["", f"Throughput ratio (tasks / min, {len(devices)} GPUs ÷ 1): **{ratio:.2f}x**; wall-time ratio "
              f"{one['wall_s'] / many['wall_s']:.2f}x.", "", "| configuration | bound, 2 GPUs | bound, 1 GPU | agree |",
              "| --- | --- | --- | --- |"]
    key = lambda r: (r["pipeline"], r["scheduler"], r["steps"])  # noqa: E731
    one_rows = {key(r): r for r in one["rows"]}  # type: ignore[union-attr]
    for r in many["rows"]:  # type: ignore[union-attr]
        o = one_rows.get(key(r))
        agree = "-"
        if o and r["speedup"] and o["speedup"]:
            lo = max(r["speedup"] * (1 - (r["ci_half_width"] or 0)), o["speedup"] * (1 - (o["ci_half_width"] or 0)))
            hi = min(r["speedup"] * (1 + (r["ci_half_width"] or 0)), o["speedup"] * (1 + (o["ci_half_width"] or 0)))
            agree = ("yes" if lo <= hi else "no") + (" (same setting)" if r["settings"] == o["settings"] else " (other setting)")
        lines.append(f"| {r['pipeline']} / {r['scheduler']} / {r['steps']} | {_bound(r)} | {_bound(o) if o else '-'} | {agree} |")
    k = results["kill"]
    lines += ["", f"Kill run ({aliases[0]} / DDIM / {args.kill_steps}, {args.devices}, lease {args.lease} s): {json.dumps(k['killed'])}; "
              f"tasks {k['tasks']}; exit code {k['returncode']}; wall {k['wall_s']:.1f} s; duplicate keys "
              f"{k['duplicate_speed_keys']} + {k['duplicate_task_keys']}."]
    report = "\n".join(lines)
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report + "\n", encoding="utf-8")
        Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
