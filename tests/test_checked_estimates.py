"""Checked first estimates: the setting over the timing set, the baseline over one batch of it right after; the
speed baseline, scaled by that run's drift, stands in for the other batches, or they are re-timed where it drifted.
Issue 22's H100 run: a paired pass ran 9 images per setting where the filing-day pass ran 5, and bought nothing on a
quiet host; a checked pass runs 6. Real tiny pipelines on the CPU."""

from __future__ import annotations

import math
import statistics
import tomllib
from pathlib import Path

import pytest
from sqlalchemy import select

from search_space import defaults
from search_space.base_config import BaseConfig
from search_space.setting import AccelSetting
from storage import Repository
from storage.models import SpeedBaselineRow, SpeedTrialRow
from sweep.accelerators import AppliedSetting
from sweep.measurement.measure import Generator, batches, checked_pass, stable_pass
from sweep.measurement.speed_pass import (
    CHECKED_SOURCE,
    RETIMED_SOURCE,
    checked_first_estimate,
    checked_timing_set_pass,
)
from sweep.measurement.stats import TimingPolicy, paired_estimate
from sweep.pipelines.loader import load_pipeline
from sweep.pipelines.registry import PIPELINES
from sweep.study.catalogue import parse_space
from sweep.study.runner import Runner
from tests.conftest import tiny_speed_space

DEEPCACHE = AccelSetting.of({"deepcache": {"cache_interval": 3, "cache_branch_id": 0}})


@pytest.fixture(scope="module")
def gen() -> Generator:
    pipe = load_pipeline(BaseConfig("tiny-sd-a", "builtin:tiny-sd-a", "random", "DDIMScheduler", 6, 64, 64, "float32", 1), "cpu")
    return Generator(pipe, 6, 64, 64, "cpu", options=PIPELINES["tiny-sd-a"].call_options)


def test_a_check_within_tolerance_scales_the_speed_baseline_and_one_off_re_times_it(gen: Generator) -> None:
    work = batches(["a cat", "a dog", "a bird"], [0, 1, 2], 1)
    reference = stable_pass(gen, work, TimingPolicy(warmup_cap=3)).seconds_per_image
    images = gen.images
    applied = AppliedSetting(gen.pipe, DEEPCACHE)

    def accelerate() -> None:
        applied.apply()
        gen.call = applied.call

    def restore() -> None:
        applied.remove()
        gen.call = None

    # any drift accepted: only the check batch is run by the baseline, the others are the reference scaled by it
    kept = checked_pass(gen, work, accelerate, restore, reference, 1, math.inf)
    assert gen.images - images == 1 + 3 + 1  # warm-up, the setting's pass, the check
    assert not kept.retimed and len(kept.check_images) == 1
    assert kept.baseline_seconds[1] == pytest.approx(kept.drift * reference[1])
    assert kept.baseline_seconds == pytest.approx(tuple(r * kept.drift for r in reference))
    estimate = checked_first_estimate(kept)
    speedup, half = paired_estimate(kept.baseline_seconds, kept.accelerated_seconds)
    assert estimate.source == CHECKED_SOURCE and estimate.pairs == 3
    assert estimate.speedup == pytest.approx(speedup)
    assert estimate.ci_half_width == pytest.approx(half + abs(math.log(kept.drift)))  # the drift's size is owned up to
    # a reference twice (or half) as slow as the machine now: the check is off, every baseline batch is re-run
    for factor in (2.0, 0.5):
        images = gen.images
        moved = checked_pass(gen, work, accelerate, restore, tuple(r * factor for r in reference), 2,
                             defaults.DRIFT_TOLERANCE)
        assert moved.retimed and gen.images - images == 1 + 3 + 3
        assert statistics.fmean(moved.baseline_seconds) == pytest.approx(statistics.fmean(reference), rel=0.5)
        assert checked_first_estimate(moved).source == RETIMED_SOURCE
        assert checked_first_estimate(moved).ci_half_width == pytest.approx(
            paired_estimate(moved.baseline_seconds, moved.accelerated_seconds)[1])
    assert gen.call is None  # the pipeline is restored
    # the runner's entry point: the protocol's tolerance, and a reference this machine matches only by chance
    run = checked_timing_set_pass(gen, work, applied, tuple(r * 3 for r in reference), 0)
    assert run.retimed and checked_first_estimate(run).source == RETIMED_SOURCE


SPACE = tiny_speed_space("checked", cache_intervals="2, 3, 4").replace(
    "num_prompts = 1\ntiming_prompts = 1", "num_prompts = 2\ntiming_prompts = 2")


def test_a_speed_only_row_of_several_timing_prompts_checks_instead_of_pairing(tmp_path: Path, sqlite_url: str) -> None:
    """Each setting costs a warm-up, its pass and one baseline run (two more where the check drifted): counted
    from the run's own images, and each stored estimate says which it was."""
    path = tmp_path / "space.toml"
    path.write_text(SPACE, encoding="utf-8")
    repo = Repository(sqlite_url)
    summary = Runner(repo, "cpu").run(parse_space(tomllib.loads(SPACE), str(path)), canary=False)
    with repo.session() as s:
        (base,) = s.scalars(select(SpeedBaselineRow)).all()
        trials = s.scalars(select(SpeedTrialRow)).all()
    assert base.source == "timing set" and len(base.batch_seconds) == 2
    assert len(trials) == 3 and {t.first_source for t in trials} <= {CHECKED_SOURCE, RETIMED_SOURCE}
    for t in trials:
        assert t.first_pairs == 2 and t.first_log_sd is not None
        drift = t.first_baseline_time / base.time
        if t.first_source == CHECKED_SOURCE:  # the speed baseline scaled by a drift within the tolerance
            assert abs(math.log(drift)) <= defaults.DRIFT_TOLERANCE + 1e-12
    retimed = sum(t.first_source == RETIMED_SOURCE for t in trials)
    precise = sum(t.warmup_runs + 2 * t.pairs for t in trials if t.speedup is not None)
    assert summary.images == base.warmup_runs + 2 + 3 * (1 + 2 + 1) + retimed * 1 + precise
