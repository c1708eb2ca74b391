"""A row's first estimates judged by the row's pooled noise, not each by its own few pairs: with 2 timing prompts a
paired first estimate has one degree of freedom (Student's t of 12.7), so its own interval reached every leader and
made every setting a contender (issue 22's H200 run: ±144% to ±646%)."""

from __future__ import annotations

import json
import math
import statistics
import tomllib
from pathlib import Path

import pytest
from scipy.stats import t as student
from sqlalchemy import select
from typer.testing import CliRunner

from search_space import defaults
from storage import Repository
from storage.measurements import SpeedResult, row_noise
from storage.models import SpeedTrialRow
from sweep.fronts.cli import app
from sweep.measurement.speed_pass import CHECKED_SOURCE, MEASURED_SOURCES, PAIRED_SOURCE
from sweep.measurement.stats import log_spread, paired_estimate
from sweep.study.catalogue import parse_space
from sweep.study.runner import Runner
from tests.conftest import tiny_speed_space

runner = CliRunner()


def estimate(key: str, speedup: float, pairs: int | None, log_sd: float | None, source: str = PAIRED_SOURCE,
             own: float = 1.0) -> SpeedResult:
    return SpeedResult(key, "done", None, "random", speedup, own, source, 1.0 / speedup, 1.0,
                       first_pairs=pairs, first_log_sd=log_sd)


def test_a_rows_estimates_share_its_pooled_noise_and_a_noisier_one_keeps_its_own() -> None:
    row = {"a": estimate("a", 2.0, 2, 0.02), "b": estimate("b", 3.0, 2, 0.04), "c": estimate("c", 1.5, 2, 0.30),
           "old": estimate("old", 1.2, None, None, own=0.4),
           "shared": estimate("shared", 2.5, 2, 0.02, source="shared from DDIMScheduler")}
    judged = row_noise(row)
    df = 4  # four estimates of two pairs
    pooled = math.sqrt((0.02**2 + 0.04**2 + 0.30**2 + 0.02**2) / df)
    t = student.ppf(0.975, df)
    for key in ("a", "b", "shared"):
        margin = defaults.PAIRED_FIRST_MARGIN + (defaults.SHARED_MARGIN if key == "shared" else 0.0)
        assert judged[key].row_half_width == pytest.approx(math.expm1(t * pooled / math.sqrt(2)) + margin)
        assert judged[key].published_half_width == judged[key].row_half_width
        assert judged[key].interval_source == "row noise"
    # c is noisier than its row: its own spread, with the row's degrees of freedom
    assert judged["c"].row_half_width == pytest.approx(math.expm1(t * 0.30 / math.sqrt(2)) + defaults.PAIRED_FIRST_MARGIN)
    # stored before pairs were recorded: its own interval, outside the pool
    assert judged["old"].row_half_width is None and judged["old"].published_half_width == 0.4
    assert judged["old"].interval_source == "own pairs"
    # one degree of freedom is not a pool: each keeps its own interval
    alone = row_noise({"a": row["a"]})
    assert alone["a"].row_half_width is None and alone["a"].published_half_width == 1.0
    # never wider than its own interval: one noisy pass widens the pool, not a quiet estimate's own bound
    narrow = row_noise({**row, "a": estimate("a", 2.0, 2, 0.02, own=0.03)})
    assert narrow["a"].row_half_width == 0.03


def test_a_paired_first_estimates_own_interval_is_its_pairs_spread() -> None:
    baseline, accelerated = (1.0, 1.1, 0.9), (0.5, 0.52, 0.47)
    speedup, half = paired_estimate(baseline, accelerated)
    sd = log_spread(baseline, accelerated)
    assert sd == pytest.approx(statistics.stdev(math.log(b / a) for b, a in zip(baseline, accelerated)))
    assert half == pytest.approx(math.expm1(student.ppf(0.975, 2) * sd / math.sqrt(3)) + defaults.PAIRED_FIRST_MARGIN)
    assert log_spread((1.0,), (0.5,)) is None


SPACE = tiny_speed_space("row noise", cache_intervals="2, 3, 4").replace(
    "num_prompts = 1\ntiming_prompts = 1", "num_prompts = 2\ntiming_prompts = 2")


def test_a_measured_rows_first_estimates_are_published_with_its_pooled_noise(tmp_path: Path, sqlite_url: str) -> None:
    """A real tiny row, two timing prompts: every first estimate stores its pairs and spread, and what the row
    publishes and decides with is the pooled interval, labelled as such."""
    path = tmp_path / "space.toml"
    path.write_text(SPACE, encoding="utf-8")
    space = parse_space(tomllib.loads(SPACE), str(path))
    repo = Repository(sqlite_url)
    Runner(repo, "cpu").run(space, canary=False)
    with repo.session() as s:
        stored = [t for t in s.scalars(select(SpeedTrialRow)) if t.first_source in MEASURED_SOURCES]
    assert len(stored) == 3 and all(t.first_pairs == 2 and t.first_log_sd is not None for t in stored)
    for t in stored:  # the own interval is stored as measured: one degree of freedom (and a checked pass's drift)
        drift = defaults.DRIFT_TOLERANCE if t.first_source == CHECKED_SOURCE else 0.0
        assert t.first_ci_half_width == pytest.approx(
            math.expm1(student.ppf(0.975, 1) * t.first_log_sd / math.sqrt(2)) + defaults.PAIRED_FIRST_MARGIN + drift)
    pooled = math.sqrt(statistics.fmean(t.first_log_sd**2 for t in stored))
    t3 = student.ppf(0.975, 3)
    (bound,) = repo.bounds.rows(0.02)
    speeds = repo.bounds.speeds(bound)
    for t in stored:  # the first estimate's interval, precise timing or not; published where it is what is known
        s = speeds[t.setting_key]
        drift = defaults.DRIFT_TOLERANCE if t.first_source == CHECKED_SOURCE else 0.0  # kept in the row's noise
        expected = min(t.first_ci_half_width,
                       math.expm1(t3 * max(pooled, t.first_log_sd) / math.sqrt(2)) + defaults.PAIRED_FIRST_MARGIN + drift)
        assert s.row_half_width == pytest.approx(expected)
        assert (s.published_half_width, s.interval_source) == ((s.ci_half_width, "pairs") if s.precise else
                                                               (pytest.approx(expected), "row noise"))
    out = runner.invoke(app, ["upbound", str(path), "--db", sqlite_url, "--device", "cpu", "--format", "json"])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.stdout)
    assert row["ci_from"] == "pairs" and row["timing"] == "precise"
