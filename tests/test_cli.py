"""The sweep command on real tiny pipelines and a real SQLite file: run, skip on re-run, query, status, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storage import Repository
from storage.models import QualityTrialRow, SpeedTrialRow
from sweep.fronts.cli import app
from tests.conftest import SMALL_SPACE, write_space

runner = CliRunner()


def _json(output: str) -> object:
    return json.loads(output[output.index("[") if output.lstrip().startswith("[") else output.index("{"):])


def test_upbound_on_random_weights_prints_a_speed_map_then_skips_everything_stored(small_space: Path, sqlite_url: str) -> None:
    first = runner.invoke(app, ["upbound", str(small_space), "--db", sqlite_url, "--device", "cpu", "--quiet", "--format", "json"])
    assert first.exit_code == 0, first.output
    (row,) = json.loads(first.stdout)
    assert row["pipeline"] == "tiny-sd-b" and row["scheduler"] == "DDIMScheduler" and row["steps"] == 4
    # random weights measure speed only: the fastest setting, quality unknown, never a 1.00x "bound"
    assert row["kind"] == "speed map" and row["quality_known"] is False and row["score_loss"] is None
    assert row["quality_source"] is None and row["speed_source"]["weights"] == "random"
    assert row["speedup"] > 1.0 and row["settings"] != {} and row["trials"] == 4
    # the published value is a precise paired timing, made after the setting was picked
    assert row["confirmed"] is True and row["timing"] == "precise" and row["ci_half_width"] is not None
    assert row["time"] > 0 and row["baseline_time"] > row["time"]
    # torch on a CPU generates bit-identical images for the same prompts and seeds; the protocol records it
    assert row["deterministic"] is True and row["repeat_max_pixel_diff"] == 0

    repo = Repository(sqlite_url)
    with repo.session() as s:
        speeds = s.query(SpeedTrialRow).all()
        assert s.query(QualityTrialRow).count() == 0
    assert len(speeds) == 5
    # deepcache with cache_interval=1 runs every step in full: applied, but it changes nothing.
    (nothing,) = [t for t in speeds if t.status == "failed"]
    assert nothing.settings == {"deepcache": {"cache_branch_id": 0, "cache_interval": 1}}
    assert nothing.reason == "changed nothing: every image is identical to the baseline's"

    second = runner.invoke(app, ["upbound", str(small_space), "--db", sqlite_url, "--device", "cpu"])
    assert second.exit_code == 0, second.output
    assert "small: 0 new, 6 stored, 0 failed, 0 rejected early, 0 timed precisely; 0 images" in " ".join(second.output.split())

    status = runner.invoke(app, ["status", "--db", sqlite_url, "--format", "json"])
    precise = sum(1 for t in speeds if t.speedup is not None and t.precise_stop != "below leader")
    below = sum(1 for t in speeds if t.precise_stop == "below leader")
    assert precise >= 1
    assert json.loads(status.stdout) == {
        "base_configs": 1, "speed": {"baselines": 1, "trials": {"done": 4, "failed": 1}, "precise": precise,
                                     "below_leader": below},
        "quality": {"baselines": 0, "trials": {}}, "tasks": {}}
    table = runner.invoke(app, ["query", "--db", sqlite_url])
    assert "Speed map (quality unknown)" in table.stdout and "unknown" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 120


def test_space_show_lists_base_configs(small_space: Path) -> None:
    result = runner.invoke(app, ["space", "show", str(small_space), "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["settings"] == 5 and row["pipeline"] == "tiny-sd-b" and row["notes"] == []
    preset = runner.invoke(app, ["space", "show", "--preset", "tiny"])
    assert "tiny: 8 base configurations, 64 accelerated settings" in preset.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["upbound", "missing.toml"], "missing.toml: no such space file"),
        (["upbound"], "give either a SPACE_FILE or --preset NAME"),
        (["upbound", "--preset", "huge"], "unknown preset 'huge'"),
        (["upbound", "--preset", "tiny", "--max-loss", "1"], "--max-loss must be in [0, 1), got 1.0"),
        (["query", "--max-loss", "-0.1"], "--max-loss must be in [0, 1), got -0.1"),
        (["query", "--target", "2", "--speed-only"], "--target looks up settings by their score loss"),
        (["status", "--db", "sqlite:////no/such/folder/x.db"], "folder /no/such/folder does not exist"),
        (["status", "--db", "postgresql://nobody@127.0.0.1:1/x"], "cannot open postgresql://nobody@127.0.0.1:1/x: connection failed"),
        (["status", "--db", "mysql://x/y"], "unsupported database 'mysql'"),
        (["status", "--db", "not a url"], "is not a database URL"),
        (["upbound", "--preset", "tiny", "--device", "cuda:7"], "--device cuda:7"),
    ],
)
def test_user_mistakes_get_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "error:" in result.output and message in " ".join(result.output.split())


def test_space_file_mistakes_exit_cleanly(tmp_path: Path, sqlite_url: str) -> None:
    bad_scheduler = write_space(tmp_path, SMALL_SPACE.replace('"DDIMScheduler"', '"DDIMX"'), "a.toml")
    bad_param = write_space(tmp_path, SMALL_SPACE.replace("ratio = [0.5]", "ratio = [0.5]\nspeed = 2"), "b.toml")
    for path, message in ((bad_scheduler, "unknown scheduler 'DDIMX'; valid:"), (bad_param, "unknown key 'speed'")):
        result = runner.invoke(app, ["upbound", str(path), "--db", sqlite_url])
        assert result.exit_code == 2 and message in result.output


def test_non_sqlite_file_is_refused_without_traceback(tmp_path: Path) -> None:
    fake = tmp_path / "notes.db"
    fake.write_text("these are my notes, not a database\n" * 100)
    proc = subprocess.run(
        [sys.executable, "-m", "sweep", "status", "--db", f"sqlite:///{fake}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "not an SQLite database" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
