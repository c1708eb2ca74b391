"""`sweep upbound` (coordinator and its worker) killed with SIGKILL at random moments, then resumed: every key is
stored once, no task is left leased, and the result holds the same keys as an uninterrupted run.

The moments come from a seeded generator, so a failure reproduces: SWEEP_KILL_SEED picks another seed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from storage import Repository
from storage.models import (
    BaseConfigRow,
    QualityBaselineRow,
    QualityTrialRow,
    SpeedBaselineRow,
    SpeedConfigRow,
    SpeedTrialRow,
    TaskRow,
)
from tests.conftest import quality_space, write_space

SEED = int(os.environ.get("SWEEP_KILL_SEED", "20261126"))
KILLS = 3


def _upbound(space: Path, url: str) -> subprocess.Popen[bytes]:
    # its own process group, so that a kill takes the worker it spawned too (as a crash of the machine would)
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", "upbound", str(space), "--db", url, "--workers", "1", "--device", "cpu",
         "--lease", "5", "--max-loss", "0.5", "--quiet", "--format", "json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )


def _keys(url: str) -> dict[str, list[tuple[str, ...]]]:
    repo = Repository(url)
    with repo.session() as s:
        speed = {c.id: c.key for c in s.scalars(select(SpeedConfigRow))}
        base = {b.id: b.key for b in s.scalars(select(BaseConfigRow))}
        out = {
            "speed baselines": [(speed[r.speed_config_id],) for r in s.scalars(select(SpeedBaselineRow))],
            "speed": [(speed[r.speed_config_id], r.setting_key, r.weights_key) for r in s.scalars(select(SpeedTrialRow))],
            "quality baselines": [(base[r.base_config_id],) for r in s.scalars(select(QualityBaselineRow))],
            "quality": [(base[r.base_config_id], r.setting_key) for r in s.scalars(select(QualityTrialRow))],
            "tasks": [(r.status, r.kind) for r in s.scalars(select(TaskRow))],
        }
    repo.close()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, local_weights: dict[str, str]) -> tuple[Path, dict]:
    """The space, and the keys an uninterrupted run stores (one run serves both backends: keys are text)."""
    folder = tmp_path_factory.mktemp("kills")
    space = write_space(folder, quality_space(local_weights, prompts=4))
    url = f"sqlite:///{folder / 'reference.db'}"
    proc = _upbound(space, url)
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()  # type: ignore[union-attr]
    return space, _keys(url)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_killed_at_random_moments_then_resumed(backend: str, reference: tuple[Path, dict],
                                               request: pytest.FixtureRequest) -> None:
    space, want = reference
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    rng = random.Random(SEED)
    landed = 0
    for _ in range(KILLS):
        proc = _upbound(space, url)
        time.sleep(rng.uniform(2.0, 9.0))
        if proc.poll() is not None:
            break  # it finished first: the later kills have nothing to interrupt
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        landed += 1
    assert landed >= 1, "no kill landed mid-run"
    final = _upbound(space, url)
    assert final.wait(timeout=600) == 0, final.stderr.read().decode()  # type: ignore[union-attr]

    got = _keys(url)
    for name in ("speed baselines", "speed", "quality baselines", "quality"):
        assert len(got[name]) == len(set(got[name])), f"{name} stored twice (seed {SEED})"
        assert sorted(got[name]) == sorted(want[name]), f"{name} differ from an uninterrupted run (seed {SEED})"
    assert {status for status, _ in got["tasks"]} == {"done"}, f"tasks left behind (seed {SEED}): {got['tasks']}"
