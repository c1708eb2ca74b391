"""Checked first estimates: the setting over the timing set, then the baseline over one batch of it right after
(once untimed, once timed: the check). Within the drift tolerance the setting is compared with the speed baseline's
own pass (the tolerance added to the interval); past it, the row gets paired passes. Issue 22's H100 run: a paired
pass ran 9 images per setting where the filing-day pass ran 5, and bought nothing on a quiet host; a checked pass
runs 7. Real tiny pipelines on the CPU."""

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
    PAIRED_SOURCE,
    checked_first_estimate,
    checked_timing_set_pass,
    switches,
)
from sweep.measurement.stats import TimingPolicy, paired_estimate
from sweep.pipelines.loader import load_pipeline
from sweep.pipelines.registry import PIPELINES
from sweep.study.catalogue import parse_space
from sweep.study.runner import Runner
from tests.conftest import precise_images, tiny_speed_space

DEEPCACHE = AccelSetting.of({"deepcache": {"cache_interval": 3, "cache_branch_id": 0}})


@pytest.fixture(scope="module")
def gen() -> Generator:
    pipe = load_pipeline(BaseConfig("tiny-sd-a", "builtin:tiny-sd-a", "random", "DDIMScheduler", 6, 64, 64, "float32", 1), "cpu")
    return Generator(pipe, 6, 64, 64, "cpu", options=PIPELINES["tiny-sd-a"].call_options)


def test_a_check_within_tolerance_compares_with_the_speed_baseline_and_one_off_returns_none(gen: Generator) -> None:
    work = batches(["a cat", "a dog", "a bird"], [0, 1, 2], 1)
    reference = stable_pass(gen, work, TimingPolicy(warmup_cap=3)).seconds_per_image
    applied = AppliedSetting(gen.pipe, DEEPCACHE)
    accelerate, restore = switches(gen, applied)
    images = gen.images
    # any drift accepted: the speed baseline's own batches are the baseline, the check a gate
    kept = checked_pass(gen, work, accelerate, restore, reference, 1, math.inf)
    assert gen.images - images == 1 + 3 + 2  # warm-up, the setting's pass, the check (once untimed, once timed)
    assert kept.passed and len(kept.check_images) == 1 and kept.baseline_seconds == tuple(reference)
    estimate = checked_first_estimate(kept)
    speedup, half = paired_estimate(reference, kept.accelerated_seconds)
    assert estimate.source == CHECKED_SOURCE and estimate.pairs == 3
    assert estimate.speedup == pytest.approx(speedup) and estimate.baseline_time == pytest.approx(statistics.fmean(reference))
    # the check bounds the drift between the two passes by the tolerance: added whole, whatever the check read
    assert estimate.ci_half_width == pytest.approx(half + defaults.DRIFT_TOLERANCE)
    # a reference twice (or half) as slow as the machine now: the check fails and gives no baseline
    for factor in (2.0, 0.5):
        moved = checked_pass(gen, work, accelerate, restore, tuple(r * factor for r in reference), 2,
                             defaults.DRIFT_TOLERANCE)
        assert not moved.passed and moved.baseline_seconds is None
        assert moved.drift == pytest.approx(1 / factor, rel=0.5)
        with pytest.raises(AssertionError):
            checked_first_estimate(moved)
    assert gen.call is None  # the pipeline is restored
    run = checked_timing_set_pass(gen, work, applied, tuple(r * 3 for r in reference), 0)  # the runner's entry point
    assert not run.passed and gen.call is None


SPACE = tiny_speed_space("checked", cache_intervals="2, 3, 4").replace(
    "num_prompts = 1\ntiming_prompts = 1", "num_prompts = 2\ntiming_prompts = 2")


def test_a_speed_only_row_of_several_timing_prompts_checks_instead_of_pairing(tmp_path: Path, sqlite_url: str) -> None:
    """Each setting costs a warm-up, its pass and two baseline runs of one batch; a check that drifted turns the
    rest of the row to paired passes (that setting's paired pass on top): counted from the run's own images."""
    path = tmp_path / "space.toml"
    path.write_text(SPACE, encoding="utf-8")
    repo = Repository(sqlite_url)
    summary = Runner(repo, "cpu").run(parse_space(tomllib.loads(SPACE), str(path)), canary=False)
    with repo.session() as s:
        (base,) = s.scalars(select(SpeedBaselineRow)).all()
        trials = s.scalars(select(SpeedTrialRow).order_by(SpeedTrialRow.id)).all()
    assert base.source == "timing set" and len(base.batch_seconds) == 2
    sources = [t.first_source for t in trials]
    assert len(trials) == 3 and set(sources) <= {CHECKED_SOURCE, PAIRED_SOURCE}
    first_paired = sources.index(PAIRED_SOURCE) if PAIRED_SOURCE in sources else len(sources)
    assert all(s == PAIRED_SOURCE for s in sources[first_paired:])  # once drifting, the row stays paired
    for t in trials:
        assert t.first_pairs == 2 and t.first_log_sd is not None
        if t.first_source == CHECKED_SOURCE:  # compared with the speed baseline's own pass
            assert t.first_baseline_time == pytest.approx(base.time)
    images = base.warmup_runs + 2 + first_paired * (1 + 2 + 2)
    if first_paired < len(trials):  # the drifted check, then its paired pass; the rest paired from the start
        images += (1 + 2 + 2) + (1 + 2 * 2) + (len(trials) - first_paired - 1) * (1 + 2 * 2)
    assert summary.images == images + precise_images(trials)



def _run(tmp_path: Path, db: str, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "space.toml"
    path.write_text(text, encoding="utf-8")
    return Runner(Repository(db), "cpu").run(parse_space(tomllib.loads(text), str(path)), canary=False)


def test_a_speed_baseline_from_another_session_is_not_a_reference(tmp_path: Path, sqlite_url: str) -> None:
    """Resumed (or on another worker), the stored speed baseline was timed in another process, perhaps another
    machine state: a setting added then is measured with a paired pass."""
    _run(tmp_path, sqlite_url, tiny_speed_space("resumed", cache_intervals="2").replace(
        "num_prompts = 1\ntiming_prompts = 1", "num_prompts = 2\ntiming_prompts = 2"))
    _run(tmp_path, sqlite_url, tiny_speed_space("resumed", cache_intervals="2, 4").replace(
        "num_prompts = 1\ntiming_prompts = 1", "num_prompts = 2\ntiming_prompts = 2"))
    with Repository(sqlite_url).session() as s:
        trials = s.scalars(select(SpeedTrialRow).order_by(SpeedTrialRow.id)).all()
    assert len(trials) == 2 and trials[0].first_source in (CHECKED_SOURCE, PAIRED_SOURCE)
    assert trials[1].first_source == PAIRED_SOURCE


def test_an_estimate_shared_from_a_checked_one_keeps_its_interval_out_of_the_pool(tmp_path: Path, sqlite_url: str) -> None:
    """A checked estimate's drift tolerance is in its own interval: shared to a row of another scheduler it keeps that
    interval (plus the scheduler margin) instead of being pooled without it."""
    _run(tmp_path, sqlite_url, tiny_speed_space("shared", schedulers='"DDIMScheduler", "UniPCMultistepScheduler"',
                                                cache_intervals="2, 3, 4").replace(
        "num_prompts = 1\ntiming_prompts = 1", "num_prompts = 2\ntiming_prompts = 2"))
    repo = Repository(sqlite_url)
    with repo.session() as s:
        trials = s.scalars(select(SpeedTrialRow).order_by(SpeedTrialRow.id)).all()
    donors = {t.setting_key: t for t in trials if t.first_source in (CHECKED_SOURCE, PAIRED_SOURCE)}
    shared = [t for t in trials if (t.first_source or "").startswith("shared from")]
    assert shared
    for t in shared:
        donor = donors[t.setting_key]
        assert t.first_ci_half_width == pytest.approx(donor.first_ci_half_width + defaults.SHARED_MARGIN)
        assert (t.first_pairs is None) == (donor.first_source == CHECKED_SOURCE)
    for bound in repo.bounds.rows(0.02):
        for s in repo.bounds.speeds(bound).values():
            if s.shared and not s.precise and s.first_pairs is None:
                assert s.published_half_width == s.first_ci_half_width and s.interval_source == "own pairs"


def test_a_drifted_check_turns_the_rest_of_the_row_to_paired_passes(tmp_path: Path, sqlite_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """No drift at all tolerated: the first check drifts, that setting gets a paired pass on top of its checked one,
    and every later setting of the row a paired pass from the start."""
    monkeypatch.setattr(defaults, "DRIFT_TOLERANCE", 0.0)
    summary = _run(tmp_path, sqlite_url, SPACE)
    with Repository(sqlite_url).session() as s:
        (base,) = s.scalars(select(SpeedBaselineRow)).all()
        trials = s.scalars(select(SpeedTrialRow).order_by(SpeedTrialRow.id)).all()
    assert [t.first_source for t in trials] == [PAIRED_SOURCE] * 3
    assert summary.images == base.warmup_runs + 2 + (1 + 2 + 2) + 3 * (1 + 2 * 2) + precise_images(trials)
