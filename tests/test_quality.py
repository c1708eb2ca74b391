"""The quality pass and the speed pass on real tiny pipelines, loaded as local "pretrained" folders and scored
by a real open_clip scorer loaded from a checkpoint file (their weights are random: the scores are test data).
"""

from __future__ import annotations

import json
import statistics
import tomllib
from pathlib import Path

import pytest
import torch
from sqlalchemy import select
from typer.testing import CliRunner

from storage import Repository
from storage.models import (
    QualityBaselineRow,
    QualityTrialRow,
    SpeedBaselineRow,
    SpeedTrialRow,
)
from sweep.fronts.cli import app
from sweep.measurement.speed_pass import CHECKED_SOURCE, PAIRED_SOURCE
from sweep.study.catalogue import parse_space
from sweep.study.runner import Runner, SearchOptions
from tests.conftest import TINY_A_SPACE, quality_space, write_space

runner = CliRunner()
PROMPTS = 6
TIMING = 1  # quality_space's timing prompts
SETTINGS = 8  # TINY_A_SPACE: deepcache {2, 3} × tome {0.3, 0.6}, with each off, minus the baseline


def _space(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = write_space(tmp_path, text)
    return parse_space(tomllib.loads(path.read_text()), str(path))


def test_each_needed_image_is_generated_once(tmp_path: Path, sqlite_url: str, local_weights: dict[str, str]) -> None:
    space = _space(tmp_path, quality_space(local_weights, prompts=PROMPTS))
    repo = Repository(sqlite_url)
    summary = Runner(repo, "cpu").run(space, search=SearchOptions(max_loss=0.5), confirm_top=0)
    # the baseline's prompts once (its first image twice: warm-up, and the determinism check), each setting's
    # prompts once, then its first speed estimate: the timing set (one prompt) by the setting and the baseline
    # back to back (the quality pass has just warmed the setting up)
    assert summary.images == PROMPTS + 1 + SETTINGS * (PROMPTS + 2 * TIMING)
    assert summary.new == 1 + SETTINGS and summary.rejected == 0

    with repo.session() as s:
        (qb,) = s.scalars(select(QualityBaselineRow)).all()
        trials = s.scalars(select(QualityTrialRow)).all()
        (sb,) = s.scalars(select(SpeedBaselineRow)).all()
        speeds = s.scalars(select(SpeedTrialRow)).all()
    assert len(qb.scores) == PROMPTS and qb.clip_score == pytest.approx(statistics.fmean(qb.scores))
    assert qb.repeat_max_pixel_diff == 0  # torch on a CPU reproduces an image bit for bit
    assert sb.source == "quality pass" and len(sb.batch_seconds) == PROMPTS
    assert len(trials) == len(speeds) == SETTINGS
    for t in trials:
        assert t.status == "done" and t.prompts_used == PROMPTS and len(t.scores) == PROMPTS
        by_hand = (statistics.fmean(qb.scores) - statistics.fmean(t.scores)) / statistics.fmean(qb.scores)
        assert t.score_loss == pytest.approx(by_hand)
        assert t.loss_low < t.score_loss < t.loss_high
        assert t.image_deviation is not None and t.image_deviation > 0  # the baseline's images were at hand
    assert all(s.first_source == PAIRED_SOURCE and s.first_speedup > 0 and s.speedup is None for s in speeds)

    again = Runner(repo, "cpu").run(space, search=SearchOptions(max_loss=0.5), confirm_top=0)
    assert (again.new, again.images, again.stored) == (0, 0, 1 + SETTINGS)


def test_upbound_publishes_a_precisely_timed_bound_with_its_sources(tmp_path: Path, sqlite_url: str,
                                                                     local_weights: dict[str, str]) -> None:
    path = write_space(tmp_path, quality_space(local_weights, prompts=4))
    result = runner.invoke(app, ["upbound", str(path), "--db", sqlite_url, "--device", "cpu", "--max-loss", "0.5",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["kind"] == "upper bound" and row["quality_known"] is True
    assert row["confirmed"] is True and row["timing"] == "precise" and row["settings"]
    assert row["speedup"] > 1.0 and row["score_loss"] <= 0.5 and len(row["score_loss_ci"]) == 2
    assert row["quality_source"]["model"] == local_weights["tiny-sd-a"]
    assert row["quality_source"]["scorer"] == f"open_clip:sweep-tiny-clip:{local_weights['clip']}"
    assert row["speed_source"]["timing"] == "precise" and row["device"].startswith("cpu")
    repo = Repository(sqlite_url)
    speeds = repo.measurements.speeds(repo.scope_of(1, 1, 1, 1))
    best = speeds[json.dumps(row["settings"], sort_keys=True, separators=(",", ":"))]
    assert best.precise and best.speedup == pytest.approx(row["speedup"]) and best.pairs >= 2


def test_sequential_rejection_stops_a_setting_that_is_clearly_worse(tmp_path: Path, sqlite_url: str,
                                                                      local_weights: dict[str, str]) -> None:
    prompts = 12
    space = _space(tmp_path, quality_space(local_weights, prompts=prompts))
    repo = Repository(sqlite_url)
    # A quality baseline stored elsewhere scored 10 CLIP points above anything this pipeline generates: every
    # setting's loss is far above 2%, and the pass sees it after a few prompts.
    probe = Runner(repo, "cpu")
    scope_run = probe.scope_run(space.entries[0].base, probe_scope(repo, probe, space), _protocol(space), True, [])
    rows = scope_run.baseline_rows()
    for row in rows:
        if isinstance(row, QualityBaselineRow):
            row.scores = [s + 10.0 for s in row.scores]
            row.clip_score = statistics.fmean(row.scores)
    repo.measurements.save(rows)

    summary = Runner(repo, "cpu").run(space, search=SearchOptions(max_loss=0.02), confirm_top=0, canary=False)  # no re-timing of the baseline stored above
    assert summary.rejected == SETTINGS
    with repo.session() as s:
        trials = s.scalars(select(QualityTrialRow)).all()
    assert {t.status for t in trials} == {"rejected"}
    assert all(3 <= t.prompts_used < prompts and t.rejected_at == 0.02 and t.loss_low > 0.02 for t in trials)
    used = sum(t.prompts_used for t in trials)
    assert summary.images == used  # a rejected setting generated only the prompts it used
    (bound,) = repo.bounds.rows(0.02)
    assert bound.quality_known and bound.speedup == 1.0 and bound.settings == {}  # nothing within 2%

    # a rejection against 2% says nothing about 95%: a looser threshold measures those settings in full
    looser = Runner(repo, "cpu").run(space, search=SearchOptions(max_loss=0.95), confirm_top=0)
    assert looser.new == SETTINGS
    with repo.session() as s:
        assert {t.status for t in s.scalars(select(QualityTrialRow))} == {"done"}


def probe_scope(repo: Repository, runner_: Runner, space):  # type: ignore[no-untyped-def]
    from sweep.measurement.environment import Environment

    env, quality, timing = runner_.ids(_protocol(space), Environment.detect("cpu"))
    return repo.scope(space.entries[0].base, env, quality, timing)


def _protocol(space):  # type: ignore[no-untyped-def]
    from sweep.measurement.protocol import Protocol

    return Protocol.resolve(space.protocol)


def test_random_weights_measure_speed_only(tmp_path: Path, sqlite_url: str) -> None:
    space = _space(tmp_path, TINY_A_SPACE)
    repo = Repository(sqlite_url)
    summary = Runner(repo, "cpu").run(space, confirm_top=0)
    assert summary.new == 1 + SETTINGS
    with repo.session() as s:
        assert s.scalars(select(QualityTrialRow)).all() == [] and s.scalars(select(QualityBaselineRow)).all() == []
        speeds = s.scalars(select(SpeedTrialRow)).all()
    # a speed-only row's speed baseline is its timing set's own pass: first estimates are checked against it
    assert len(speeds) == SETTINGS and {t.first_source for t in speeds} <= {CHECKED_SOURCE, PAIRED_SOURCE}
    # every timing carries the host's state it was made in (a CPU here: no GPU busy fraction to read)
    with repo.session() as s:
        (base,) = s.scalars(select(SpeedBaselineRow)).all()
    for host in [base.host, *(t.first_host for t in speeds)]:
        assert host["cpu"] and host["cpus"] >= 1 and host["cpu_seconds_per_image"] > 0 and host["gpu_busy"] is None
        assert host["steal_seconds_per_image"] is not None and host["steal_seconds_per_image"] >= 0
    (row,) = [b.as_row() for b in repo.bounds.rows(0.02)]
    assert row["kind"] == "speed map" and row["score_loss"] is None and row["speedup"] > 1.0


def test_quality_from_one_environment_joins_speed_from_another(tmp_path: Path, sqlite_url: str,
                                                               local_weights: dict[str, str]) -> None:
    """Quality measured where the weights are (here: one CPU thread), speed on the target (two threads, random
    weights): the target's environment gets a real upper bound, with each half's source."""
    threads = torch.get_num_threads()
    repo = Repository(sqlite_url)
    try:
        torch.set_num_threads(1)
        Runner(repo, "cpu").run(_space(tmp_path, quality_space(local_weights, prompts=4)), confirm_top=0,
                                search=SearchOptions(max_loss=0.5))
        torch.set_num_threads(2)
        Runner(repo, "cpu").run(_space(tmp_path, TINY_A_SPACE), search=SearchOptions(max_loss=0.5))
    finally:
        torch.set_num_threads(threads)
    result = runner.invoke(app, ["query", "--db", sqlite_url, "--environment", "2 threads", "--max-loss", "0.5",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["kind"] == "upper bound" and row["device"].endswith("(2 threads)")
    assert row["quality_source"]["device"].endswith("(1 threads)") and row["speed_source"]["weights"] == "random"
    assert row["timing"] == "precise"  # the target's precise timing went to the settings the joined quality allows
    quality = Repository(sqlite_url).measurements
    with quality.db.session() as s:
        losses = {t.setting_key: t.score_loss for t in s.scalars(select(QualityTrialRow))}
    assert row["score_loss"] == pytest.approx(losses[json.dumps(row["settings"], sort_keys=True, separators=(",", ":"))])
    bad = runner.invoke(app, ["query", "--db", sqlite_url, "--environment", "TPU"])
    assert bad.exit_code == 2 and "matches no stored environment" in bad.output


def test_legacy_quality_joins_speed_measured_here(tmp_path: Path, sqlite_url: str) -> None:
    """A legacy file's score losses for the tiny configuration (64², float16, batch 1 are the legacy defaults)
    join the speed this machine measures."""
    fp16 = TINY_A_SPACE.replace('dtype = "float32"', 'dtype = "float16"').replace("ratio = [0.3, 0.6]", "ratio = []")
    space = _space(tmp_path, fp16.replace("[accelerators.tome]\nratio = []\n", "").replace("steps = [6]", "steps = [2]"))
    Runner(Repository(sqlite_url), "cpu").run(space, confirm_top=0)
    legacy = tmp_path / "search_params.json"
    legacy.write_text(json.dumps({
        "('tiny-sd-a', 'DDIMScheduler', 2, 'upbound_speedup', 0.02)":
            {"cache_interval": 2, "cache_branch_id": 0, "time": 0.5, "speedup": 1.5, "score_loss": 0.01},
        "('tiny-sd-a', 'DDIMScheduler', 2, 9.9, 0.02)":
            {"cache_interval": 3, "cache_branch_id": 0, "time": 0.4, "speedup": 1.9, "score_loss": 0.03},
    }))
    assert runner.invoke(app, ["import", "--legacy", str(legacy), "--db", sqlite_url]).exit_code == 0
    repo = Repository(sqlite_url)
    here = repo.environment_ids("cpu")
    (bound,) = repo.bounds.rows(0.02, environment_ids=here)
    assert bound.quality_known and bound.quality is not None and bound.quality.scorer == "imported:search_params.json"
    assert bound.settings == {"deepcache": {"cache_interval": 2, "cache_branch_id": 0}}  # interval 3 is over 2%
    assert bound.device.startswith("cpu") and bound.speedup != 1.5  # this machine's speed, not the file's


PIXART_SPACE = """
name = "pixart"
combine = true

[protocol]
prompts = "bundled"
num_prompts = 2
timing_prompts = 1
scorer = "sweep-tiny-clip"
scorer_pretrained = "random"
warmup_cap = 2
min_pairs = 2
max_pairs = 2

[[base]]
pipelines = ["tiny-pixart"]
schedulers = ["DPMSolverMultistepScheduler"]
steps = [10]
dtype = "float32"

[accelerators.tgate]
gate_step = [4]
sp_interval = [2]

[accelerators.cache_dit]
Fn_compute_blocks = [1]
max_warmup_steps = [2]
residual_diff_threshold = [0.5]
"""


def test_weight_dependent_speed_from_random_weights_is_stored_but_kept_out(tmp_path: Path, sqlite_url: str) -> None:
    space = _space(tmp_path, PIXART_SPACE)
    assert sorted(sorted(dict(s)) for s in space.entries[0].settings[1:]) == [["cache_dit"], ["tgate"]]  # never combined
    repo = Repository(sqlite_url)
    Runner(repo, "cpu").run(space, confirm_top=0)
    with repo.session() as s:
        speeds = {next(iter(t.settings)): t for t in s.scalars(select(SpeedTrialRow))}
    assert speeds["tgate"].weights_key == "" and speeds["tgate"].status == "done"  # its speed holds for any weights
    assert speeds["cache_dit"].weights_key == "random" and speeds["cache_dit"].status == "done"
    (row,) = [b.as_row() for b in repo.bounds.rows(0.02)]
    assert row["kind"] == "speed map" and set(row["settings"]) == {"tgate"} and row["trials"] == 1
    shown = json.loads(runner.invoke(app, ["query", "--db", sqlite_url, "--weight-dependent", "--format", "json"]).stdout)
    (flagged,) = shown
    assert flagged["trials"] == 2
    assert flagged["speed_source"]["weight_dependent_random"] == ("cache_dit" in flagged["settings"])
