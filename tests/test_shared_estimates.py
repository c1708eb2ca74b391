"""Shared work across schedulers: rows that differ in the scheduler alone and make the same denoiser calls share
their settings' first estimates; only the contenders are timed in each row, so every published bound is still a
precise timing of its own row. Real tiny pipelines on the CPU."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from sqlalchemy import select

from search_space import defaults
from storage import Repository
from storage.measurements import _speed_result
from storage.models import SpeedConfigRow, SpeedTrialRow
from sweep.measurement.speed_pass import PAIRED_SOURCE
from sweep.pipelines.loader import denoiser_calls
from sweep.study.catalogue import parse_space
from sweep.study.runner import Runner
from tests.conftest import precise_images, tiny_speed_space

SETTINGS = 2


# a clear loser beside a clear leader, the leader timed to ±10%: DeepCache skipping 7 of 8 steps' deep blocks (about
# 2.5x on the tiny pipeline, this machine) and ToMe at 64x64 (about 1.25x), so the loser's first estimate cannot
# reach the leader's precise interval and stays a (shared) first estimate whatever the machine's noise
APART = dict(steps="8", cache_intervals="8", extra="""
[accelerators.tome]
ratio = [0.5]
max_downsample = [1]
""", tight=True)


def run(tmp_path: Path, db: str, schedulers: str, *, steps: str = "4", cache_intervals: str = "2, 4",
        extra: str = "", tight: bool = False, **options: object):  # type: ignore[no-untyped-def]
    path = tmp_path / "space.toml"
    text = tiny_speed_space("shared", schedulers=schedulers, steps=steps, cache_intervals=cache_intervals) + extra
    if tight:
        text = text.replace("target_half_width = 0.5", "target_half_width = 0.1").replace("max_pairs = 3", "max_pairs = 10")
    path.write_text(text, encoding="utf-8")
    space = parse_space(tomllib.loads(path.read_text()), str(path))
    return Runner(Repository(db), "cpu").run(space, canary=False, **options)  # type: ignore[arg-type]


def trials(db: str) -> dict[str, list[SpeedTrialRow]]:
    with Repository(db).session() as s:
        rows = s.execute(select(SpeedConfigRow.scheduler, SpeedTrialRow).join(
            SpeedConfigRow, SpeedConfigRow.id == SpeedTrialRow.speed_config_id).order_by(SpeedTrialRow.id)).all()
    out: dict[str, list[SpeedTrialRow]] = {}
    for scheduler, trial in rows:
        out.setdefault(scheduler, []).append(trial)
    return out


def test_denoiser_calls_are_counted_from_the_schedulers_timesteps() -> None:
    assert denoiser_calls("tiny-sd-a", "DDIMScheduler", 4) == denoiser_calls("tiny-sd-a", "UniPCMultistepScheduler", 4) == 4
    assert denoiser_calls("tiny-sd-a", "HeunDiscreteScheduler", 4) == 7  # a second call on every step but the last
    assert denoiser_calls("tiny-sd-a", "PNDMScheduler", 4) == 5  # PLMS warms up with one more


def test_a_row_of_another_scheduler_with_the_same_denoiser_calls_shares_first_estimates(tmp_path: Path,
                                                                                          sqlite_url: str) -> None:
    summary = run(tmp_path, sqlite_url, '"DDIMScheduler", "UniPCMultistepScheduler", "HeunDiscreteScheduler"')
    by = trials(sqlite_url)
    ddim = {t.setting_key: t for t in by["DDIMScheduler"]}
    unipc, heun = by["UniPCMultistepScheduler"], by["HeunDiscreteScheduler"]
    assert len(ddim) == len(unipc) == len(heun) == SETTINGS
    assert all(t.first_source == PAIRED_SOURCE for t in ddim.values())
    # Heun calls the denoiser 7 times in 4 steps: its own measurement
    assert all(t.first_source == PAIRED_SOURCE for t in heun)
    for t in unipc:
        donor = ddim[t.setting_key]
        assert t.first_source == "shared from DDIMScheduler" and t.first_host is None
        assert t.first_speedup == donor.first_speedup
        assert t.first_ci_half_width == pytest.approx(donor.first_ci_half_width + defaults.SHARED_MARGIN)
    # every row's leader was timed precisely in its own row
    for rows in by.values():
        leader = max(rows, key=lambda t: t.speedup or t.first_speedup)
        assert leader.speedup is not None and leader.pairs >= 2
    unipc_precise = [t for t in unipc if t.speedup is not None]
    assert unipc_precise and all(t.precise_host is not None for t in unipc_precise)

    # what sharing saved, exactly: each shared setting's first-estimate pass (one warm-up run, then the timing set's
    # one prompt by the setting and by the baseline); precise timings (warm-up runs and pairs) are counted apart
    unshared_db = sqlite_url.replace(".db", "-unshared.db")
    unshared = run(tmp_path, unshared_db, '"DDIMScheduler", "UniPCMultistepScheduler", "HeunDiscreteScheduler"',
                   shared_estimates=False)
    assert all(t.first_source == PAIRED_SOURCE for rows in trials(unshared_db).values() for t in rows)
    assert without_precise(summary.images, sqlite_url) == without_precise(unshared.images, unshared_db) - SETTINGS * 3


def without_precise(images: int, db: str) -> int:
    return images - precise_images([t for rows in trials(db).values() for t in rows])


def test_nothing_is_shared_where_nothing_is_timed_precisely(tmp_path: Path, sqlite_url: str) -> None:
    run(tmp_path, sqlite_url, '"DDIMScheduler", "UniPCMultistepScheduler"', confirm_top=0)
    assert all(t.first_source == PAIRED_SOURCE for rows in trials(sqlite_url).values() for t in rows)


def test_a_shared_estimate_is_labelled_and_not_fitted_by_the_speed_model(tmp_path: Path, sqlite_url: str) -> None:
    run(tmp_path, sqlite_url, '"DDIMScheduler", "UniPCMultistepScheduler"', **APART)  # type: ignore[arg-type]
    repo = Repository(sqlite_url)
    observations = repo.measurements.speed_observations()
    shared = [t for t in trials(sqlite_url)["UniPCMultistepScheduler"] if t.speedup is None]
    assert shared, "every setting was timed precisely: nothing left to check"
    assert {_speed_result(t).timing for t in shared} == {"shared estimate"}
    kinds = [(o.scheduler, o.kind) for o in observations if o.settings]
    assert ("UniPCMultistepScheduler", "first estimate") not in kinds  # a shared estimate is the donor's observation
    assert len(kinds) == SETTINGS + (SETTINGS - len(shared))
    from sweep import app as app_layer

    rows = app_layer.upper_bounds(sqlite_url, speed_only=True)
    assert {r["timing"] for r in rows} == {"precise"}  # each row's published bound: a precise timing of its own row
