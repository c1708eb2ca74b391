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
