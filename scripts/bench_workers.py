"""Benchmark: throughput of 1, 2 and 4 CPU workers on the tiny preset against PostgreSQL.

Usage: python scripts/bench_workers.py [--admin-url postgresql+psycopg://postgres@127.0.0.1:5432/test]
           [--workers 1,2,4] [--preset tiny] [--out FILE]

For each worker count: a fresh database, `sweep upbound --preset tiny --workers N --device cpu
--confirm-top 0`, timed from the first task claimed to the last task finished (from the queue's own
timestamps, so process start-up is excluded); trials per minute and the ratio to one worker. CPU workers
share the machine's cores (each gets cores / N torch threads), so on a 2-core machine the ratio measures how
well the queue keeps the cores busy, not GPU-style scaling.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from storage import Repository
from storage.models import TaskRow


def run(admin_url: str, workers: int, preset: str) -> tuple[int, float, float]:
    name = f"sweep_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sweep", "upbound", "--preset", preset, "--db", url, "--workers",
                        str(workers), "--device", "cpu", "--confirm-top", "0", "--quiet"], check=True,
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        repo = Repository(url)
        with repo.session() as s:
            done = s.scalar(select(func.count()).select_from(TaskRow).where(TaskRow.status == "done")) or 0
            first, last = s.execute(select(func.min(TaskRow.created_at), func.max(TaskRow.updated_at))).one()
        repo.close()
        return done, (last - first).total_seconds(), wall
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default=os.environ.get("SWEEP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    lines = [
        f"# Worker throughput on the {args.preset} preset, PostgreSQL, {os.cpu_count()} CPU cores",
        "",
        "| workers | tasks | queue seconds | wall seconds | tasks / minute | ratio to 1 worker |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    base = None
    for n in (int(w) for w in args.workers.split(",")):
        done, seconds, wall = run(args.admin_url, n, args.preset)
        rate = 60 * done / seconds
        base = base or rate
        lines.append(f"| {n} | {done} | {seconds:.1f} | {wall:.1f} | {rate:.1f} | {rate / base:.2f} |")
        print(lines[-1], flush=True)
    text_out = "\n".join(lines)
    print(text_out)
    if args.out:
        Path(args.out).write_text(text_out + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
