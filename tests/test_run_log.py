"""The run log (``SWEEP_RUN_LOG``): one JSON line per timed call, naming what ran (the baseline or the setting's
key) and what else ran inside the timed region (garbage collections, CUDA allocations). Issue 22's H100 run had
two precise timings with occasional slow calls it could not explain; the log is how a GPU run finds their cause.
A real tiny pipeline on the CPU."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from search_space.base_config import BaseConfig
from search_space.setting import AccelSetting
from sweep.accelerators import AppliedSetting
from sweep.measurement.measure import RUN_LOG_ENV, Generator, batches, paired_pass
from sweep.measurement.speed_pass import switches
from sweep.pipelines.loader import load_pipeline
from sweep.pipelines.registry import PIPELINES

DEEPCACHE = AccelSetting.of({"deepcache": {"cache_interval": 3, "cache_branch_id": 0}})


def test_every_timed_call_is_logged_with_what_ran_and_the_collections_inside_it(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "runs.jsonl"
    monkeypatch.setenv(RUN_LOG_ENV, str(log))
    pipe = load_pipeline(BaseConfig("tiny-sd-a", "builtin:tiny-sd-a", "random", "DDIMScheduler", 4, 64, 64, "float32", 1), "cpu")
    gen = Generator(pipe, 4, 64, 64, "cpu", options=PIPELINES["tiny-sd-a"].call_options)
    work = batches(["a cat", "a dog"], [0, 1], 1)
    run = paired_pass(gen, work, *switches(gen, AppliedSetting(pipe, DEEPCACHE)))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 1 + 2 * len(work)  # the warm-up, then each batch by both sides
    assert sum(r["images"] for r in records) == gen.images
    labels = [r["label"] for r in records]
    assert labels.count("baseline") == len(work) and labels.count(DEEPCACHE.key) == 1 + len(work)
    logged = {r["label"]: [] for r in records}
    for r in records[1:]:
        logged[r["label"]].append(r["seconds"])
    assert logged["baseline"] == pytest.approx(list(run.baseline_seconds))
    assert logged[DEEPCACHE.key] == pytest.approx(list(run.accelerated_seconds))
    assert gen.label == "baseline" and all(r["steps"] == 4 and r["gc_collections"] >= 0 for r in records)
    # the CPU's speed right after each call, and the GPU's busy fraction (none on a CPU)
    assert all(r["cpu_probe_ms"] > 0 and r["gpu_busy"] is None for r in records)

    def collect_inside(*args: object, **kwargs: object) -> object:
        gc.collect()  # a full collection inside the timed call: the log must see it
        return pipe(*args, **kwargs)

    gen.call = collect_inside
    gen.run(work[0])
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["gc_collections"] >= 1 and last["gc_seconds"] > 0


def test_a_loaded_pipeline_is_out_of_the_collectors_reach_until_it_is_released(tmp_path: Path) -> None:
    """A full collection inside a timed call walks the whole heap (on an H100, 394 ms inside a 0.79 s call): the
    runner freezes what is alive once a pipeline is loaded, and hands it back to the collector when it lets the
    pipeline go, so that nothing it set aside outlives it."""
    import weakref

    from storage import Repository
    from sweep.study.runner import Runner

    base = BaseConfig("tiny-sd-a", "builtin:tiny-sd-a", "random", "DDIMScheduler", 4, 64, 64, "float32", 1)
    runner = Runner(Repository(f"sqlite:///{tmp_path / 'gc.db'}"), "cpu")
    gc.unfreeze()
    pipe = runner.pipeline(base)
    frozen = gc.get_freeze_count()
    assert frozen > sum(1 for _ in pipe.unet.modules())  # the pipeline is among the frozen objects
    assert not any(o is pipe.unet for o in gc.get_objects(generation=2))  # a full collection does not walk it
    # a scheduler swap keeps the pipeline and freezes nothing more (the old scheduler leaves the frozen set, freed)
    assert runner.pipeline(BaseConfig(*{**base.__dict__, "scheduler": "UniPCMultistepScheduler"}.values())) is pipe
    assert frozen - 1000 < gc.get_freeze_count() <= frozen
    unet = weakref.ref(pipe.unet)
    del pipe
    runner.release()
    assert gc.get_freeze_count() == 0
    assert unet() is None  # collected: the freeze kept nothing alive
