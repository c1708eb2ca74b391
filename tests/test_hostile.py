"""Hostile use: concurrent starts on a new database, impossible or malformed legacy files, bad export paths,
and space files whose mistakes must keep their place names. Each case: one clear line, a non-zero exit, and
nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from storage import Repository
from storage.models import EnvironmentRow, QualityTrialRow, SpeedTrialRow
from sweep.fronts.cli import app
from tests.conftest import SMALL_SPACE, write_space

runner = CliRunner()
GOOD = {"cache_interval": 10, "ratio": 0.5, "time": 0.16, "speedup": 12.0, "score_loss": 0.019}
KEY = "('SD1.5', 'DDIMScheduler', 50, 'upbound_speedup', 0.02)"


def _one_line_error(result, message: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a user mistake, not a traceback
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert message in lines[0], lines[0]


def test_processes_starting_together_on_a_new_database_all_get_its_schema(db_url: str) -> None:
    procs = [subprocess.Popen([sys.executable, "-m", "sweep", "status", "--db", db_url, "--format", "json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err for _, err in results]
    assert all(json.loads(out)["base_configs"] == 0 for out, _ in results)


@pytest.mark.parametrize(("value", "key", "message"), [
    ({**GOOD, "speedup": -2.0}, KEY, "speedup must be in (0, 1e+06], got -2.0"),
    ({**GOOD, "time": "1e999 in the file"}, KEY, "time must be a finite number, got inf"),
    ({**GOOD, "score_loss": 5.0}, KEY, "score_loss must be in [-1, 1], got 5.0"),
    ({**GOOD, "time": "fast"}, KEY, "time must be a finite number, got 'fast'"),
    ({**GOOD, "time": None}, KEY, "time must be a finite number, got None"),
    ({**GOOD, "speedup": True}, KEY, "speedup must be a finite number, got True"),
    ({k: v for k, v in GOOD.items() if k != "score_loss"}, KEY, "missing score_loss"),
    (GOOD, "('SD1.5', 'DDIMScheduler', -3, 'upbound_speedup', 0.02)", "steps must be an integer ≥ 1, got -3"),
    (GOOD, "('SD1.5', 'DDIMScheduler', 'fifty', 'upbound_speedup', 0.02)", "steps must be an integer ≥ 1, got 'fifty'"),
    (GOOD, "('SD1.5', 'DDIMScheduler', 50, 'hard', 0.02)", "must be 'upbound_speedup' or a target speed-up, got 'hard'"),
    (GOOD, "('SD1.5', 'DDIMScheduler', 50, 'upbound_speedup', 'two')", "max_loss must be a finite number, got 'two'"),
    (GOOD, "('SD1.5', 'DDIMScheduler', 50)", "the key is not a tuple"),
    ({**GOOD, "cache_interval": 0}, KEY, "0 is not int in [1, 1000]"),
])
def test_impossible_legacy_entries_are_refused_whole(tmp_path: Path, sqlite_url: str, value: dict, key: str,
                                                     message: str) -> None:
    path = tmp_path / "search_params.json"
    # a valid entry first: the refusal must leave nothing of it behind
    text_ = json.dumps({"('SD2.1', 'DDIMScheduler', 20, 'upbound_speedup', 0.02)": GOOD, key: value})
    path.write_text(text_.replace('"1e999 in the file"', "1e999"))  # a JSON number that parses to infinity
    _one_line_error(runner.invoke(app, ["import", "--legacy", str(path), "--db", sqlite_url]), message)
    with Repository(sqlite_url).session() as s:
        assert s.scalar(select(func.count()).select_from(SpeedTrialRow)) == 0
        assert s.scalar(select(func.count()).select_from(EnvironmentRow)) == 0


@pytest.mark.parametrize("content", [
    '{"(\'SD1.5\', \'DDIMScheduler\', 50, \'upbound_speedup\', 0.02)": {"time": NaN, "speedup": 2, "score_loss": 0}}',
    "[1, 2, 3]",
    "{not json",
])
def test_malformed_legacy_files_get_one_line(tmp_path: Path, sqlite_url: str, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = runner.invoke(app, ["import", "--legacy", str(path), "--db", sqlite_url])
    assert result.exit_code == 2 and "Traceback" not in result.output and result.output.startswith("error: ")


def test_fifty_megabytes_of_random_bytes_are_not_a_legacy_file(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "noise.json"
    path.write_bytes(os.urandom(50 * 1024 * 1024))
    proc = subprocess.run([sys.executable, "-m", "sweep", "import", "--legacy", str(path), "--db", sqlite_url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "not a readable JSON file (UnicodeDecodeError" in proc.stderr


def test_the_legacy_round_trip_is_word_for_word(tmp_path: Path, sqlite_url: str) -> None:
    original = {
        # parameters left at their defaults are not written, and must not appear in the export
        "('SD1.5', 'DDIMScheduler', 50, 'upbound_speedup', 0.02)": {"cache_interval": 10, "time": 0.16, "speedup": 12.0,
                                                                   "score_loss": 0.019},
        "('SD1.5', 'DDIMScheduler', 50, 'upbound_speedup', 0.05)": {"cache_interval": 20, "ratio": 0.5, "time": 0.1,
                                                                   "speedup": 15.0, "score_loss": 0.04},
        "('SD1.5', 'DDIMScheduler', 50, 9.6, 0.02)": {"cache_interval": 5, "time": 0.2, "speedup": 9.7,
                                                     "score_loss": 0.004},
    }
    path = tmp_path / "search_params.json"
    path.write_text(json.dumps(original))
    assert runner.invoke(app, ["import", "--legacy", str(path), "--db", sqlite_url]).exit_code == 0
    for args in ([], ["--max-loss", "0.02", "--max-loss", "0.05"], ["--max-loss", "0.1"]):
        out = tmp_path / "again.json"
        result = runner.invoke(app, ["export", "--legacy", str(out), "--db", sqlite_url, *args])
        assert result.exit_code == 0, result.output
        assert json.loads(out.read_text()) == original, args


def test_export_to_a_missing_folder_or_a_folder_gets_one_line(tmp_path: Path, sqlite_url: str) -> None:
    _one_line_error(runner.invoke(app, ["export", "--legacy", "/nonexist/out.json", "--db", sqlite_url]),
                    "/nonexist/out.json: folder /nonexist does not exist")
    _one_line_error(runner.invoke(app, ["export", "--legacy", str(tmp_path), "--db", sqlite_url]),
                    "is a folder: give a file name for the export")


@pytest.mark.parametrize(("edit", "message"), [
    (("cache_interval = [1, 2]", "cache_interval = []"), "axisempty.toml: [accelerators.deepcache]: cache_interval has no values"),
    (("steps = [4]", "steps = []"), "axisempty.toml: [[base]] #1: steps has no values"),
    (('schedulers = ["DDIMScheduler"]', "schedulers = []"), "axisempty.toml: [[base]] #1: schedulers has no values"),
    (('pipelines = ["tiny-sd-b"]', 'pipelines = ["nope"]'), "axisempty.toml: [[base]] #1: unknown pipeline 'nope'"),
])
def test_space_mistakes_keep_their_place(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    path = write_space(tmp_path, SMALL_SPACE.replace(*edit), "axisempty.toml")
    _one_line_error(runner.invoke(app, ["space", "show", str(path)]), message)


def test_a_database_of_someone_else_is_refused_not_overwritten(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    from storage.engine import open_engine

    with open_engine(url).begin() as connection:
        connection.execute(text("CREATE TABLE sweep_trials (id INTEGER PRIMARY KEY)"))
    _one_line_error(runner.invoke(app, ["status", "--db", url]), "holds sweep tables (sweep_trials...) but no sweep schema")


def test_quality_is_never_imported_half(tmp_path: Path, sqlite_url: str) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({KEY: GOOD, "('SD1.5', 'DDIMScheduler', 50, 9.6, 0.02)": {**GOOD, "speedup": 13.0}}))
    _one_line_error(runner.invoke(app, ["import", "--legacy", str(good), "--db", sqlite_url]),
                    "give the same setting different time, speedup or score_loss")
    with Repository(sqlite_url).session() as s:
        assert s.scalar(select(func.count()).select_from(QualityTrialRow)) == 0
