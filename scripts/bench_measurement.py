"""Benchmarks of how sweep measures: fidelity of its timing, what a study costs, and early rejection.

Usage:
  python scripts/bench_measurement.py fidelity [--device cuda] [--pipeline SD1.5] [--steps 20] [--rounds 6]
  python scripts/bench_measurement.py cost [--device cuda] [--prompts 16] [--max-loss 0.1] [--old .old --old-budget 150]
  python scripts/bench_measurement.py rejection [--device cpu] [--prompts 16] [--entries N]
  (each takes --out FILE to write its markdown table too)

- fidelity: one process, one pipeline; sweep's timed generation with its progress bar live (redrawn when a
  measurement starts, as `sweep upbound` does), the same redrawn after every generation (this release's first
  design), without a bar, a bare loop calling the pipeline, and the previous release's bar (a refresh thread,
  10 times a second), interleaved round by round: sweep's time should be within 3% of the bare loop's.
- cost: the reference preset's DeepCache × ToMe settings on one base configuration with random weights, the
  quality pass forced on with a random scorer so the work is what a real-weight run does (its scores stay in
  this benchmark's throwaway databases); GPU seconds spent (every timed generation, warm-ups included) ÷ the
  minimum (the baseline once and every image it kept once, at their measured per-image times), for the grid and
  the frontier strategy, and for the previous release's protocol (``--old``: a copy of that release's code,
  e.g. ``git archive 7567180 | tar -x -C .old``), limited by a time budget.
- rejection: the tiny preset with the quality pass forced on (random scorer) over more prompts: how many
  settings each threshold rejects early, and how many of the prompts they used.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import sweep._compat  # noqa: F401
from storage import Repository
from storage.models import (
    QualityBaselineRow,
    QualityTrialRow,
    SpeedBaselineRow,
    SpeedTrialRow,
)
from sweep.measurement.environment import Environment
from sweep.reporting.output import settings_text
from sweep.study.catalogue import parse_space
from sweep.study.runner import Runner, SearchOptions

COST_SPACE = """
name = "cost"
combine = true

[protocol]
prompts = "bundled"
num_prompts = {prompts}
timing_prompts = 4
scorer = "{scorer}"
scorer_pretrained = "random"

[pipelines."{pipeline}"]
weights = "random"

[[base]]
pipelines = ["{pipeline}"]
schedulers = ["DDIMScheduler"]
steps = [{steps}]
{resolution}
dtype = "{dtype}"
batch_size = 1

[accelerators.deepcache]
cache_interval = [2, 3, 5, 10]
cache_branch_id = [0]

[accelerators.tome]
ratio = [0.25, 0.5, 0.75]
max_downsample = [1]
"""


def _space(args: argparse.Namespace, prompts: int):  # type: ignore[no-untyped-def]
    tiny = args.pipeline.startswith("tiny")
    text = COST_SPACE.format(prompts=prompts, scorer="sweep-tiny-clip" if tiny else args.scorer, pipeline=args.pipeline,
                             steps=args.steps, resolution="resolutions = [[64, 64]]" if tiny else "",
                             dtype="float32" if args.device == "cpu" else "float16")
    return parse_space(tomllib.loads(text), "bench_measurement"), text


def _write(table: str, out: str | None) -> None:
    print(table, flush=True)
    if out:
        Path(out).write_text(table + "\n", encoding="utf-8")


# -- fidelity ---------------------------------------------------------------------------------------------------


def fidelity(args: argparse.Namespace) -> str:
    import torch
    from rich.console import Console
    from rich.progress import Progress

    from search_space.base_config import BaseConfig
    from sweep.measurement.measure import Generator, batches, quick_pass
    from sweep.measurement.prompts import load_prompts
    from sweep.pipelines.loader import load_pipeline
    from sweep.progress import PROGRESS_COLUMNS, RichProgress

    dtype = "float32" if args.device == "cpu" else "float16"
    info_res = (64, 64) if args.pipeline.startswith("tiny") else None
    from sweep.pipelines.registry import PIPELINES

    height, width = info_res or PIPELINES[args.pipeline].resolution
    base = BaseConfig(args.pipeline, "random", "random", "DDIMScheduler", args.steps, height, width, dtype, 1)
    pipe = load_pipeline(base, args.device)
    prompts = load_prompts("bundled", args.images)
    work = batches(prompts, list(range(len(prompts))), 1)
    console = Console(stderr=True, force_terminal=True)  # a live bar, as an interactive `sweep upbound` shows

    class EveryGeneration(Generator):  # the bar redrawn after every generation
        sink: RichProgress | None = None

        def run(self, batch):  # type: ignore[no-untyped-def]
            result = super().run(batch)
            if self.sink is not None:
                self.sink.refresh()
            return result

    def sweep_run(auto_refresh: bool, every_generation: bool = False) -> list[float]:
        with Progress(*PROGRESS_COLUMNS, console=console, auto_refresh=auto_refresh, refresh_per_second=10) as progress:
            sink = RichProgress(progress)
            sink.start(len(work))
            sink.describe(f"{base.label}: measuring")  # drawn as a measurement starts, before its warm-up
            gen = EveryGeneration(pipe, base.steps, base.height, base.width, args.device)
            gen.sink = sink if every_generation else None
            timed = list(quick_pass(gen, work).seconds_per_image)
            sink.advance()
            return timed

    def bare_run() -> list[float]:
        seconds = []
        pipe(prompts[0], num_inference_steps=base.steps, height=height, width=width, output_type="pil")  # warm-up, as sweep's
        for i, prompt in enumerate(prompts):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            began = time.perf_counter()
            pipe(prompt, num_inference_steps=base.steps, height=height, width=width,
                 generator=torch.Generator(device=args.device).manual_seed(i), output_type="pil")
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - began)
        return seconds

    def quiet_run() -> list[float]:
        gen = Generator(pipe, base.steps, base.height, base.width, args.device)
        return list(quick_pass(gen, work).seconds_per_image)

    runs = {"sweep (bar drawn as a measurement starts)": lambda: sweep_run(False), "bare loop": bare_run,
            "sweep, no bar": quiet_run, "bar redrawn after every generation": lambda: sweep_run(False, True),
            "0.1.0's bar (refresh thread, 10/s)": lambda: sweep_run(True)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    # garbage-collection pauses while each way runs (a full collection of a large heap can take tens of ms)
    import gc

    pauses: dict[str, list[float]] = {k: [] for k in runs}
    current = [""]
    began = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        elif current[0] and info.get("generation") == 2:
            pauses[current[0]].append(time.perf_counter() - began[0])

    gc.callbacks.append(on_gc)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order: a drift favours none
            current[0] = name
            times[name].extend(runs[name]())
            current[0] = ""
    gc.callbacks.remove(on_gc)
    if args.samples:
        Path(args.samples).write_text(json.dumps(times, indent=1) + "\n", encoding="utf-8")
    bare = statistics.fmean(times["bare loop"])
    bare_median = statistics.median(times["bare loop"])
    env = Environment.detect(args.device)
    lines = [
        f"# Timing fidelity: {base.label}, {height}x{width} {dtype}, random weights, batch 1",
        f"device: {env.device}; torch {env.libraries['torch']}, diffusers {env.libraries['diffusers']}; "
        f"{args.rounds} rounds × {args.images} images per way, interleaved, order rotated",
        "",
        "| way | images | s/image (mean) | vs bare loop | median | vs bare loop | max | full GC pauses (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *(f"| {k} | {len(v)} | {statistics.fmean(v):.4f} | {100 * (statistics.fmean(v) / bare - 1):+.2f}% | "
          f"{statistics.median(v):.4f} | {100 * (statistics.median(v) / bare_median - 1):+.2f}% | {max(v):.4f} | "
          f"{len(pauses[k])} ({sum(pauses[k]):.3f}) |"
          for k, v in times.items()),
        "",
        "goal: sweep's time within 3% of the bare loop's",
    ]
    return "\n".join(lines)


# -- cost ---------------------------------------------------------------------------------------------------------


def _minimum_new(repo: Repository) -> tuple[float, int, int]:
    """(seconds, images kept, settings) of the least work the answer needs: the quality baseline once and every
    image each setting's quality pass kept, at their measured per-image times."""
    with repo.session() as s:
        (sb,) = s.query(SpeedBaselineRow).all()
        (qb,) = s.query(QualityBaselineRow).all()
        speeds = {t.setting_key: t for t in s.query(SpeedTrialRow).all()}
        qualities = s.query(QualityTrialRow).all()
    seconds = len(qb.image_digests) * sb.time
    images = len(qb.image_digests)
    for q in qualities:
        per_image = speeds[q.setting_key].first_time or sb.time
        seconds += (q.prompts_used or 0) * per_image
        images += q.prompts_used or 0
    return seconds, images, len(qualities)


def _run_new(args: argparse.Namespace, strategy: str, folder: Path) -> dict[str, object]:
    space, _ = _space(args, args.prompts)
    repo = Repository(f"sqlite:///{folder / f'{strategy}.db'}")
    started = time.perf_counter()
    summary = Runner(repo, args.device, force_quality=True).run(space, search=SearchOptions(strategy, args.max_loss))
    wall = time.perf_counter() - started
    minimum, kept, settings = _minimum_new(repo)
    (bound,) = repo.bounds.rows(args.max_loss, unreal_quality=True)
    with repo.session() as s:
        for t in s.query(SpeedTrialRow).filter(SpeedTrialRow.speedup.is_not(None)):
            print(f"{strategy}: {settings_text(t.settings)}: first estimate {t.first_speedup:.3f}x ±{100 * t.first_ci_half_width:.1f}%, "
                  f"precise {t.speedup:.3f}x ±{100 * t.ci_half_width:.1f}% ({t.pairs} pairs)", flush=True)
    return {"protocol": f"0.2 ({strategy})", "settings": settings, "images": summary.images, "kept": kept,
            "spent": summary.generation_seconds, "minimum": minimum, "wall": wall, "bound": bound.speedup,
            "ci": bound.best.published_half_width if bound.best else None, "setting": settings_text(bound.settings),
            "loss": bound.score_loss, "timed_precisely": summary.precise, "budget": None}


OLD_DRIVER = """
import json, sys, time, tomllib
sys.path.insert(0, {root!r})
import sweep._compat
from sweep.study.catalogue import parse_space
from storage import Repository
from sweep.study.runner import Runner, SearchOptions
space = parse_space(tomllib.loads(open({space!r}).read()), "bench_measurement")
repo = Repository({url!r})
started = time.perf_counter()
summary = Runner(repo, {device!r}).run(space, confirm_for={max_loss!r}, search=SearchOptions(max_loss={max_loss!r}, time_budget={budget!r}))
wall = time.perf_counter() - started
(bound,) = repo.upper_bounds({max_loss!r})
from storage.models import BaselineRow, TrialRow
with repo.session() as s:
    (b,) = s.query(BaselineRow).all()
    trials = [t for t in s.query(TrialRow).all()]
minimum = b.n_images * b.time + sum((t.n_images or 0) * (t.time or b.time) for t in trials)
print(json.dumps({{"spent": summary.generation_seconds, "wall": wall, "minimum": minimum, "settings": len(trials),
                  "kept": b.n_images + sum(t.n_images or 0 for t in trials), "bound": bound.speedup,
                  "ci": bound.ci_half_width, "setting": bound.settings, "loss": bound.score_loss,
                  "budget_stop": summary.budget_stop, "confirmed": summary.confirmed}}))
"""


def _run_old(args: argparse.Namespace, folder: Path) -> dict[str, object]:
    _, text = _space(args, args.prompts)
    old_text = text.replace("timing_prompts = 4\n", "")  # 0.1.0 times every trial over every prompt
    space_file = folder / "old.toml"
    space_file.write_text(old_text, encoding="utf-8")
    driver = OLD_DRIVER.format(root=str(Path(args.old).resolve()), space=str(space_file), url=f"sqlite:///{folder / 'old.db'}",
                               device=args.device, max_loss=args.max_loss, budget=args.old_budget)
    proc = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, cwd=args.old)
    if proc.returncode != 0:
        raise SystemExit(f"the previous release's run failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"protocol": "0.1.0 (grid, paired over every prompt)", "settings": result["settings"], "images": None,
            "kept": result["kept"], "spent": result["spent"], "minimum": result["minimum"], "wall": result["wall"],
            "bound": result["bound"], "ci": result["ci"], "setting": settings_text(result["setting"]),
            "loss": result["loss"], "timed_precisely": result["confirmed"], "budget": result["budget_stop"]}


def cost(args: argparse.Namespace) -> str:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        only = args.only.split(",")
        for strategy in ("grid", "frontier"):
            if strategy in only:
                rows.append(_run_new(args, strategy, folder))
                print(json.dumps(rows[-1], default=str), flush=True)
        if args.old and "old" in only:
            rows.append(_run_old(args, folder))
            print(json.dumps(rows[-1], default=str), flush=True)
    env = Environment.detect(args.device)
    space, _ = _space(args, args.prompts)
    entry = space.entries[0]
    lines = [
        f"# What a study costs: {entry.base.label}, {entry.base.height}x{entry.base.width} {entry.base.dtype}, random "
        f"weights, {args.prompts} prompts, {len(entry.settings) - 1} DeepCache × ToMe settings (the reference preset's)",
        f"device: {env.device}; torch {env.libraries['torch']}, diffusers {env.libraries['diffusers']}; quality pass "
        f"forced on with a random {args.scorer} scorer (the work of a real-weight run; its scores are not quality); "
        f"max-loss {args.max_loss:g}",
        "",
        "| protocol | settings measured | images kept | GPU s spent | minimum s | spent ÷ minimum | wall s | "
        "published bound | setting | loss | timed precisely |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ci = f" ±{100 * r['ci']:.1f}%" if r["ci"] else ""
        loss = "" if r["loss"] is None else f"{100 * r['loss']:.2f}%"  # type: ignore[operator]
        lines.append(
            f"| {r['protocol']} | {r['settings']} | {r['kept']} | {r['spent']:.1f} | {r['minimum']:.1f} | "
            f"{r['spent'] / r['minimum']:.2f} | {r['wall']:.0f} | {r['bound']:.2f}x{ci} | {r['setting']} | {loss} | "
            f"{r['timed_precisely']} |")
    for r in rows:
        if r["budget"]:
            lines.append(f"\n{r['protocol']}: stopped by its {args.old_budget:.0f} s time budget ({r['budget']}); its "
                         "ratio is over the settings it measured")
    lines += ["", "goal: 0.2's spent ÷ minimum ≤ 1.3; published fastest settings agree within their CIs"]
    return "\n".join(lines)


# -- rejection -------------------------------------------------------------------------------------------------------


def _rejection_row(args: argparse.Namespace, space, max_loss: float, offset: float) -> str:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        repo = Repository(f"sqlite:///{Path(tmp) / 'r.db'}")
        runner = Runner(repo, args.device, force_quality=True)
        if offset:  # a quality baseline that scored `offset` CLIP points more on every prompt than this pipeline does
            from sweep.measurement.environment import Environment as Env
            from sweep.measurement.protocol import Protocol

            protocol = Protocol.resolve(space.protocol)
            env, quality, timing = runner.ids(protocol, Env.detect(args.device))
            for entry in space.entries:
                scope = repo.scope(entry.base, env, quality, timing)
                rows = runner.scope_run(entry.base, scope, protocol, True, []).baseline_rows()
                for row in rows:
                    if isinstance(row, QualityBaselineRow):
                        row.scores = [x + offset for x in row.scores]
                        row.clip_score = statistics.fmean(row.scores)
                repo.measurements.save(rows)
        summary = runner.run(space, search=SearchOptions(max_loss=max_loss), confirm_top=0)
        with repo.session() as s:
            trials = s.query(QualityTrialRow).all()
            base_scores = [statistics.fmean(q.scores) for q in s.query(QualityBaselineRow).all()]
    rejected = [t for t in trials if t.status == "rejected"]
    losses = [t.score_loss for t in trials if t.score_loss is not None]
    full = len(space.entries) * (args.prompts + 1) + len(trials) * args.prompts
    used = f"{statistics.fmean(t.prompts_used for t in rejected):.1f} of {args.prompts}" if rejected else "-"
    return (f"| {max_loss:g} | {offset:g} (mean baseline {statistics.fmean(base_scores):.2f}) | "
            f"{100 * statistics.median(losses):.2f}% | {len(trials)} | {len(rejected)} | {used} | "
            f"{summary.images} of {full} |")


def rejection(args: argparse.Namespace) -> str:
    from sweep.study.catalogue import load_preset

    tiny = load_preset("tiny")
    space = dataclasses.replace(tiny, protocol=dataclasses.replace(tiny.protocol, num_prompts=args.prompts),
                                entries=tiny.entries[: args.entries])
    lines = [
        f"# Sequential rejection on the tiny preset ({len(space.entries)} base configurations × "
        f"{len(space.entries[0].settings) - 1} settings), {args.prompts} prompts, quality pass forced on (random tiny "
        "CLIP: its scores are test data, not quality)",
        f"device: {Environment.detect(args.device).device}",
        "",
        "Offset 0: the pipeline's own baseline. Offset k: its quality baseline scored k CLIP points more on every "
        "prompt (as if stored from a better model), so every setting truly loses about k / (baseline + k).",
        "",
        "| max-loss | baseline offset | median loss | settings | rejected early | prompts used by rejected settings | "
        "images generated (of a pass without rejection) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for offset in args.offsets:
        for max_loss in args.losses:
            lines.append(_rejection_row(args, space, max_loss, offset))
            print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("fidelity", "cost", "rejection"):
        p = sub.add_parser(name)
        p.add_argument("--device", default="cuda" if name != "rejection" else "cpu")
        p.add_argument("--out", default=None)
    sub.choices["fidelity"].add_argument("--pipeline", default="SD1.5")
    sub.choices["fidelity"].add_argument("--steps", type=int, default=20)
    sub.choices["fidelity"].add_argument("--rounds", type=int, default=6)
    sub.choices["fidelity"].add_argument("--images", type=int, default=4)
    sub.choices["fidelity"].add_argument("--samples", default=None, help="write every per-image time here (JSON)")
    sub.choices["cost"].add_argument("--pipeline", default="SD1.5")
    sub.choices["cost"].add_argument("--steps", type=int, default=20)
    sub.choices["cost"].add_argument("--prompts", type=int, default=16)
    sub.choices["cost"].add_argument("--scorer", default="ViT-B-32")
    sub.choices["cost"].add_argument("--max-loss", type=float, default=0.1)
    sub.choices["cost"].add_argument("--old", default=None, help="folder holding the previous release's code")
    sub.choices["cost"].add_argument("--old-budget", type=float, default=150.0)
    sub.choices["cost"].add_argument("--only", default="grid,frontier,old", help="which rows: grid, frontier, old")
    sub.choices["rejection"].add_argument("--prompts", type=int, default=16)
    sub.choices["rejection"].add_argument("--entries", type=int, default=None, help="the preset's first N base configurations")
    sub.choices["rejection"].add_argument("--losses", type=float, nargs="+", default=[0.0, 0.005, 0.02])
    sub.choices["rejection"].add_argument("--offsets", type=float, nargs="+", default=[0.0, 0.5, 2.0])
    args = parser.parse_args()
    table = {"fidelity": fidelity, "cost": cost, "rejection": rejection}[args.what](args)
    _write(table, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
