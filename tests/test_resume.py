"""A sweep killed with SIGKILL mid-run, then started again, stores every key exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from storage import Repository
from storage.models import SpeedBaselineRow, SpeedTrialRow
from tests.conftest import write_space

RESUME_SPACE = """
name = "resume"

[protocol]
prompts = "bundled"
num_prompts = 2
scorer = "sweep-tiny-clip"
scorer_pretrained = "random"
warmup_cap = 2
min_pairs = 1
max_pairs = 2

[[base]]
pipelines = ["tiny-sd-b"]
schedulers = ["DDIMScheduler", "EulerDiscreteScheduler"]
steps = [4]
resolutions = [[64, 64]]
dtype = "float32"
batch_size = 2

[accelerators.deepcache]
cache_interval = [2, 3, 4]

[accelerators.tome]
ratio = [0.3, 0.5]
"""
EXPECTED_TRIALS = 2 * (4 * 3 - 1)  # 2 base configs × ((1 + 3) × (1 + 2) − baseline)


def _sweep(space: Path, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", "upbound", str(space), "--db", url, "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _count_trials(repo: Repository) -> int:
    with repo.session() as s:
        return s.scalar(select(func.count()).select_from(SpeedTrialRow)) or 0


def test_sigkill_mid_sweep_then_resume(tmp_path: Path, sqlite_url: str) -> None:
    space = write_space(tmp_path, RESUME_SPACE)
    repo = Repository(sqlite_url)
    proc = _sweep(space, sqlite_url)
    deadline = time.monotonic() + 300
    while _count_trials(repo) < 4:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the sweep stored too few trials in time"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with repo.session() as s:
        before_kill = {t.setting_key + str(t.speed_config_id): (t.id, t.finished_at) for t in s.scalars(select(SpeedTrialRow))}
        baselines_before = s.scalar(select(func.count()).select_from(SpeedBaselineRow)) or 0
    assert 4 <= len(before_kill) < EXPECTED_TRIALS, "the kill should land mid-sweep"

    resumed = _sweep(space, sqlite_url)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    stored_before = len(before_kill) + baselines_before
    expected_new = EXPECTED_TRIALS + 2 - stored_before
    assert f"resume: {expected_new} new, {stored_before} stored" in " ".join(err.split())

    with repo.session() as s:
        rows = list(s.scalars(select(SpeedTrialRow)))
        keys = [(t.speed_config_id, t.setting_key) for t in rows]
        assert len(keys) == len(set(keys)) == EXPECTED_TRIALS
        assert s.scalar(select(func.count()).select_from(SpeedBaselineRow)) == 2
        for t in rows:
            if t.status == "done":  # no half-written row
                assert None not in (t.first_speedup, t.first_ci_half_width, t.first_time, t.first_baseline_time)
        # trials stored before the kill were not measured again
        after = {t.setting_key + str(t.speed_config_id): (t.id, t.finished_at) for t in rows}
        assert {k: after[k] for k in before_kill} == before_kill
