#!/usr/bin/env python3
"""Benchmark `sweep evaluate` on a GPU: honest solutions on full-size random-weight pipelines.

For each solution: a bare loop in this process times the solution against sweep's baseline (both loaded
here, A B / B A pairs, device synchronised, perf_counter), then the grader evaluates it at targets 10% below
and 10% above that speed-up, ``--repeats`` times each (each evaluation in fresh child processes, fresh seeds).
Prints a Markdown table and writes it with the raw numbers to ``--out``.

    python scripts/gpu_grading.py --config sd --out results/        # SD1.5 / DDIM / 50, DeepCache 3, 5, 10
    python scripts/gpu_grading.py --config pixart --out results/    # PixArt-α / DPM-Solver++ / 25 at 1024², T-GATE
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sweep._compat  # noqa: F401
from search_space.base_config import BaseConfig

CONFIGS = {
    "sd": BaseConfig("SD1.5", "stable-diffusion-v1-5/stable-diffusion-v1-5", "random", "DDIMScheduler", 50, 512, 512,
                     "float16", 1),
    "pixart": BaseConfig("PixArt-α", "PixArt-alpha/PixArt-XL-2-1024-MS", "random", "DPMSolverMultistepScheduler", 25,
                         1024, 1024, "float16", 1),
    "tiny": BaseConfig("tiny-sd-a", "builtin:tiny-sd-a", "random", "DDIMScheduler", 6, 64, 64, "float32", 1),  # CPU check
}
HEAD = '''from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE = {base!r}
'''
DEEPCACHE = HEAD + '''

def load_pipe(device):
    from DeepCache import DeepCacheSDHelper

    pipe = load_pipeline(BaseConfig(**BASE), device)
    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval={interval}, cache_branch_id=0)
    helper.enable()
    return pipe
'''
TGATE = HEAD + '''

def load_pipe(device):
    import tgate

    pipe = load_pipeline(BaseConfig(**BASE), device)
    tgate.TgatePixArtAlphaLoader(pipe)
    return pipe


def generate(pipe, prompts, generators, **call):
    return pipe.tgate(prompts, generator=generators, gate_step={gate}, sp_interval={sp}, fi_interval=1, warm_up=2, **call)
'''
SOLUTIONS = {
    "sd": {f"deepcache-{i}": DEEPCACHE.replace("{interval}", str(i)) for i in (3, 5, 10)},
    "pixart": {"tgate-15-3": TGATE.replace("{gate}", "15").replace("{sp}", "3"),
               "tgate-10-5": TGATE.replace("{gate}", "10").replace("{sp}", "5")},
    "tiny": {"deepcache-3": DEEPCACHE.replace("{interval}", "3")},
}


def load_module(path: Path) -> object:
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def bare_loop(base: BaseConfig, solution: Path, prompts: list[str], pairs: int, device: str) -> dict[str, object]:
    """Baseline and solution in this process, interleaved, timed with perf_counter around synchronised calls."""
    import torch

    from sweep.pipelines.loader import load_pipeline
    from sweep.pipelines.registry import PIPELINES, canonical_alias

    options = PIPELINES[canonical_alias(base.pipeline)].call_options
    baseline = load_pipeline(base, device)
    module = load_module(solution)
    accelerated = module.load_pipe(device)  # type: ignore[attr-defined]
    accelerated.set_progress_bar_config(disable=True)
    generate = getattr(module, "generate", None)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def run(pipe: object, fn: object, seed: int, prompt: str) -> float:
        generators = [torch.Generator(device=device).manual_seed(seed)]
        call = dict(num_inference_steps=base.steps, height=base.height, width=base.width, output_type="np", **options)
        sync()
        began = time.perf_counter()
        if fn is not None:
            fn(pipe, [prompt], generators, **call)  # type: ignore[operator]
        else:
            pipe([prompt], generator=generators, **call)  # type: ignore[operator]
        sync()
        return time.perf_counter() - began

    for _ in range(2):  # warm-up
        run(baseline, None, 0, prompts[0])
        run(accelerated, generate, 0, prompts[0])
    ratios, base_s, acc_s = [], [], []
    for i in range(pairs):
        prompt = prompts[i % len(prompts)]
        if i % 2 == 0:
            b, a = run(baseline, None, 1000 + i, prompt), run(accelerated, generate, 1000 + i, prompt)
        else:
            a, b = run(accelerated, generate, 1000 + i, prompt), run(baseline, None, 1000 + i, prompt)
        ratios.append(b / a)
        base_s.append(b)
        acc_s.append(a)
    del baseline, accelerated
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {"speedup": statistics.median(ratios), "baseline_time": statistics.fmean(base_s),
            "accelerated_time": statistics.fmean(acc_s), "pairs": pairs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), required=True)
    parser.add_argument("--solutions", default="", help="comma-separated subset of the config's solutions")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bare-pairs", type=int, default=10)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--warmup-cap", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()

    import torch

    from sweep import app
    from sweep.measurement.prompts import load_prompts

    base = CONFIGS[args.config]
    chosen = {k: v for k, v in SOLUTIONS[args.config].items() if not args.solutions or k in args.solutions.split(",")}
    work = Path(tempfile.mkdtemp(prefix="sweep-gpu-grading-"))
    work.chmod(0o755)
    files = {}
    for name, text in chosen.items():
        files[name] = work / f"{name}.py"
        files[name].write_text(text.replace("{base!r}", repr(dataclasses.asdict(base))), encoding="utf-8")
        files[name].chmod(0o644)
    prompts = load_prompts("bundled", args.prompts)
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    print(f"{gpu}; torch {torch.__version__}; {base.pipeline} / {base.scheduler} / {base.steps} at {base.height}²", flush=True)

    bare = {}
    for name, path in files.items():
        began = time.perf_counter()
        bare[name] = bare_loop(base, path, prompts, args.bare_pairs, args.device)
        bare[name]["seconds"] = time.perf_counter() - began
        print(f"bare loop {name}: {bare[name]['speedup']:.3f}x ({bare[name]['seconds']:.0f} s)", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"grading-{args.config}-bare.json").write_text(json.dumps(bare))
    rows, gen = [], []
    for repeat in range(args.repeats):  # repeats outermost: a run cut short still holds every solution
        for name in files:
            for side, factor in (("below", 0.9), ("above", 1.1)):
                task_id = f"{name}-{side}-{repeat}"
                target = round(bare[name]["speedup"] * factor, 3)  # type: ignore[operator]
                rows.append({"task_id": task_id, "pipeline": base.pipeline, "scheduler": base.scheduler,
                             "steps": base.steps, "difficulty": "medium", "target": target, "max_loss": 0.02,
                             "upper_bound": None, "sentence": "", "stale": False, "settings": None,
                             "base_config": dataclasses.asdict(base), "device": gpu})
                gen.append({"prompt_id": task_id, "path_to_gen_code": str(files[name])})
    (work / "tasks.json").write_text(json.dumps(rows))
    (work / "gen.json").write_text(json.dumps(gen))
    db = f"sqlite:///{work / 'grades.db'}"
    protocol = app.grading_protocol("bundled", args.prompts, scorer_pretrained="random", warmup_cap=args.warmup_cap)
    jobs = app.grading_jobs(db, tasks_file=work / "tasks.json", solutions_file=work / "gen.json")
    log = args.out / f"grading-{args.config}-evaluations.jsonl"

    def done(job: object, o: object) -> None:  # each evaluation as it ends: a run cut by its time limit keeps them
        print(f"  {job.task.task_id}: {o.actual_speedup} {o.speedup_interval} {o.failure_reason} "  # type: ignore[attr-defined]
              f"borderline={o.borderline} {o.pairs} pairs {o.seconds:.0f} s "  # type: ignore[attr-defined]
              f"{ {k: round(v, 1) for k, v in o.phases.items()} }", flush=True)  # type: ignore[attr-defined]
        with log.open("a") as f:
            f.write(json.dumps({"task_id": job.task.task_id, "target": job.task.target,  # type: ignore[attr-defined]
                                **dataclasses.asdict(o)}, default=str) + "\n")  # type: ignore[call-overload]

    began = time.perf_counter()
    result = app.evaluate_solutions(db, jobs, args.device, protocol, out=work, on_done=done)
    total = time.perf_counter() - began

    lines = [f"GPU: {gpu}; {base.pipeline} / {base.scheduler} / {base.steps} steps, {base.height}², {base.dtype}, {base.weights} weights "
             f"(speed only); bare loop {args.bare_pairs} pairs; grader: {args.prompts} prompts, pairs until the 95% "
             "interval is on one side of the target (6 to 30)", "",
             "| solution | bare loop | grader (mean of runs) | grader / bare | verdict at −10% (×runs) | verdict at +10% "
             "(×runs) | pairs | s per evaluation |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    entries = {e["prompt_id"]: e for e in result.entries}
    for name in files:
        mine = [entries[f"{name}-{side}-{r}"] for r in range(args.repeats) for side in ("below", "above")]
        speeds = [e["evaluation_results"]["actual_speedup"] for e in mine if e["evaluation_results"]["actual_speedup"]]
        grader = statistics.fmean(speeds) if speeds else float("nan")

        def verdicts(side: str) -> str:
            got = [entries[f"{name}-{side}-{r}"]["evaluation_results"] for r in range(args.repeats)]
            words = [("speed ok" if g["failure_reason"] is None else str(g["failure_reason"]))
                     + (" (borderline)" if g["borderline"] else "") for g in got]
            return ", ".join(sorted(set(words))) + f" ×{len(words)}"

        pairs = [e["evaluation_results"]["pairs"] for e in mine]
        seconds = [e["seconds"] for e in mine]
        lines.append(f"| {name} | {bare[name]['speedup']:.3f}x | {grader:.3f}x | {grader / bare[name]['speedup']:.3f} | "  # type: ignore[operator]
                     f"{verdicts('below')} | {verdicts('above')} | {min(pairs)}–{max(pairs)} | "
                     f"{statistics.fmean(seconds):.0f} |")
    lines += ["", f"{result.graded} evaluations in {total:.0f} s."]
    table = "\n".join(lines)
    print(table)
    (args.out / f"grading-{args.config}.md").write_text(table + "\n")
    (args.out / f"grading-{args.config}.json").write_text(json.dumps({"bare": bare, "entries": result.entries,
                                                                      "report": {k: v for k, v in result.report.items()
                                                                                 if k != "task_details"}}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
