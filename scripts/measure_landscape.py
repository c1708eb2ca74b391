"""Measure a space as a full grid and save it as a landscape for the strategy benchmark.

Usage: python scripts/measure_landscape.py [--space scripts/spaces/landscape-sd15.toml] [--db sqlite:///landscape.db]
           [--device cuda] [--time-budget SECONDS] [--out tests/data/landscape-h100-sd15.json]

Goes through sweep's runner (the quality pass forced on so that every setting's image deviation is measured,
every setting timed precisely; stored setting by setting), so a run stopped by its time budget or killed is
resumed by running it again on the same database. When every setting is stored, the landscape is exported
(one JSON file: every setting's speed-up, CI, score loss and image deviation).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import sweep._compat  # noqa: F401
from storage import Repository
from sweep.study.catalogue import parse_space
from sweep.study.runner import Runner, SearchOptions
from sweep.study.strategies.replay import export_landscape


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=str(Path(__file__).parent / "spaces" / "landscape-sd15.toml"))
    parser.add_argument("--db", default="sqlite:///landscape.db")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds; no new trial starts after it")
    parser.add_argument("--out", default="landscape.json")
    parser.add_argument("--description", default="")
    args = parser.parse_args()
    space = parse_space(tomllib.loads(Path(args.space).read_text(encoding="utf-8")), args.space)
    repo = Repository(args.db)
    summary = Runner(repo, args.device, force_quality=True).run(
        space, search=SearchOptions(time_budget=args.time_budget), precise_every=True)
    total = sum(len(e.settings) for e in space.entries)
    status = repo.status()
    speed = status["speed"]
    stored = sum(speed["trials"].values()) + speed["baselines"]  # type: ignore[index,call-overload]
    gen = summary.generation_seconds
    print(f"{summary.new} new, {stored} of {total} stored, {summary.wall_seconds:.0f} s "
          f"(wall / generation = {summary.wall_seconds / gen:.2f})" if gen else f"{summary.new} new, {stored} of {total} stored")
    repo.close()
    if stored < total:
        print("incomplete: run again on the same database to finish")
        return 3
    for path in export_landscape(args.db, args.out, description=args.description):
        print(f"landscape written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
