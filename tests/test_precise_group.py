"""Precise timings of one round's contenders run together: one baseline run per round serves every setting still
timed (timed one after another, each ran the baseline as often as itself). Real tiny pipelines on the CPU."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from sqlalchemy import select

from storage import Repository
from storage.models import SpeedTrialRow
from sweep.measurement.measure import RUN_LOG_ENV
from sweep.study.catalogue import parse_space
from sweep.study.runner import Runner
from tests.conftest import tiny_speed_space

PAIRS = 4


def test_a_rounds_contenders_are_timed_together_against_the_same_baseline_runs(
        tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = tiny_speed_space("group", steps="8", cache_intervals="2, 4, 8")
    text = text.replace("min_pairs = 2", f"min_pairs = {PAIRS}").replace("max_pairs = 3", f"max_pairs = {PAIRS}")
    text = text.replace("target_half_width = 0.5", "target_half_width = 0.0001")  # never reached: every pair is run
    path = tmp_path / "space.toml"
    path.write_text(text, encoding="utf-8")
    log = tmp_path / "runs.jsonl"
    monkeypatch.setenv(RUN_LOG_ENV, str(log))
    space = parse_space(tomllib.loads(text), str(path))
    summary = Runner(Repository(sqlite_url), "cpu").run(space, canary=False, precise_every=True, confirm_top=3)
    assert summary.precise == 3
    with Repository(sqlite_url).session() as s:
        timed = s.scalars(select(SpeedTrialRow).where(SpeedTrialRow.pairs.is_not(None))).all()
    assert len(timed) == 3 and {t.pairs for t in timed} == {PAIRS}
    assert {t.precise_stop for t in timed} == {"max pairs"}
    # the same baseline runs behind all three: the same mean, to the last bit
    assert len({t.baseline_time for t in timed}) == 1
    assert len({t.time for t in timed}) == 3
    # the run log's last calls: PAIRS rounds of one baseline run and the three settings, the order reversed every round
    calls = [json.loads(line)["label"] for line in log.read_text().splitlines()]
    rounds = ["B" if c == "baseline" else "S" for c in calls[-PAIRS * 4:]]
    assert rounds == list("BSSSSSSB" * (PAIRS // 2))
    warmups = sum(t.warmup_runs for t in timed)
    assert all(c != "baseline" for c in calls[-PAIRS * 4 - warmups:-PAIRS * 4])  # each setting warmed up first


def test_a_setting_that_fails_half_applied_leaves_the_pipeline_as_the_baselines() -> None:
    """The second setting of a group raises after its hooks went on: the group's timing fails, and the pipeline
    is the baseline's again, every setting's hooks off (the runner then times the settings one at a time)."""
    from search_space.base_config import BaseConfig
    from search_space.setting import AccelSetting
    from sweep.accelerators import AppliedSetting
    from sweep.errors import AcceleratorError
    from sweep.measurement.measure import Generator, batches, digest, group_run
    from sweep.measurement.speed_pass import switches
    from sweep.measurement.stats import TimingPolicy
    from sweep.pipelines.loader import load_pipeline
    from sweep.pipelines.registry import PIPELINES

    pipe = load_pipeline(BaseConfig("tiny-sd-a", "builtin:tiny-sd-a", "random", "DDIMScheduler", 4, 64, 64, "float32", 1), "cpu")
    gen = Generator(pipe, 4, 64, 64, "cpu", options=PIPELINES["tiny-sd-a"].call_options)
    work = batches(["a cat"], [0], 1)
    before = [digest(i) for i in gen.run(work[0])[1]]
    deepcache = AppliedSetting(pipe, AccelSetting.of({"deepcache": {"cache_interval": 2, "cache_branch_id": 0}}))
    second = AppliedSetting(pipe, AccelSetting.of({"deepcache": {"cache_interval": 3, "cache_branch_id": 0}}))
    accelerate, restore = switches(gen, second)

    def half_applied() -> None:
        accelerate()
        raise AcceleratorError("failed after its hooks went on")

    with pytest.raises(AcceleratorError):
        group_run(gen, work, [switches(gen, deepcache), (half_applied, restore)], TimingPolicy(min_pairs=2, max_pairs=2))
    assert not deepcache.on and not second.on and gen.call is None and gen.label == "baseline"
    assert [digest(i) for i in gen.run(work[0])[1]] == before
