"""Targets for tasks, queries by target, and the legacy search_params.json exchange, on real SQLite and
PostgreSQL through the command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storage import Repository
from storage.targets import target_for, task_sentence
from sweep.app import parse_factors
from sweep.fronts.cli import app
from tests.test_query import (
    _precise,
    _quality,
    _quality_baseline,
    _scope,
    _setting,
    _speed,
    _speed_baseline,
)

runner = CliRunner()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def _study(url: str) -> tuple[Repository, object]:
    """SD1.5 / DDIM / 50: a precisely timed 12.0x bound within 2%, and slower settings with less loss."""
    repo = Repository(url)
    scope = _scope(repo, 50)
    _speed_baseline(repo, scope)
    _quality_baseline(repo, scope)
    for setting, speedup, loss in ((_setting(10, 0.5), 12.5, 0.019), (_setting(10), 10.0, 0.012), (_setting(5), 9.7, 0.004),
                                   (_setting(3), 8.0, 0.002), (_setting(20), 15.0, 0.05)):
        _speed(repo, scope, setting, speedup, half=0.02)
        _quality(repo, scope, setting, loss)
    _precise(repo, scope, _setting(10, 0.5), 12.0, half=0.02)
    return repo, scope


def test_target_arithmetic_and_sentence() -> None:
    assert target_for(12.0, 0.8) == 9.6 and target_for(12.0, 1.2) == 14.4 and target_for(9.99, 1.0) == 9.9
    assert parse_factors("easy=0.8,hard=1.2") == {"easy": 0.8, "hard": 1.2}
    assert task_sentence("SD1.5", "DDIMScheduler", 50, 9.6) == \
        "Take an SD1.5 pipeline (DDIM, 50 steps) as the baseline, and achieve a 9.6x speedup"


def test_targets_are_stored_with_their_bound_and_go_stale(db_url: str, tmp_path: Path) -> None:
    repo, scope = _study(db_url)
    out = tmp_path / "tasks.json"
    result = runner.invoke(app, ["targets", "--db", db_url, "--out", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    tasks = {t["difficulty"]: t for t in json.loads(out.read_text())}
    assert {d: t["target"] for d, t in tasks.items()} == {"easy": 9.6, "medium": 12.0, "hard": 14.4}
    assert tasks["easy"]["sentence"] == "Take an SD1.5 pipeline (DDIM, 50 steps) as the baseline, and achieve a 9.6x speedup"
    # 9.7x ±2% (the least loss) only may reach 9.6x: the setting attached is 10.0x ±2%, wholly above it
    assert tasks["easy"]["settings"] == _setting(10).as_dict()
    assert tasks["medium"]["settings"] == _setting(10, 0.5).as_dict()  # only the bound itself reaches 12.0x
    assert tasks["hard"]["settings"] is None and tasks["hard"]["upper_bound"] == 12.0

    _precise(repo, scope, _setting(10, 0.5), 11.0)  # timed again, the bound changes
    listed = runner.invoke(app, ["targets", "--db", db_url, "--format", "json"])
    assert "stale" in listed.output
    rows = json.loads(listed.stdout)
    assert all(r["stale"] and r["upper_bound"] == 12.0 and r["current_upper_bound"] == 11.0 for r in rows)
    refreshed = json.loads(runner.invoke(app, ["targets", "--db", db_url, "--refresh", "--format", "json"]).stdout)
    assert {r["difficulty"]: r["target"] for r in refreshed} == {"easy": 8.8, "medium": 11.0, "hard": 13.2}
    assert not any(r["stale"] for r in refreshed)

    csv_out = tmp_path / "tasks.csv"
    assert runner.invoke(app, ["targets", "--db", db_url, "--out", str(csv_out)]).exit_code == 0
    assert len(list(csv.DictReader(csv_out.open()))) == 3
    bad = runner.invoke(app, ["targets", "--db", db_url, "--factors", "easy:0.8"])
    assert bad.exit_code != 0 and "name=positive number" in bad.output


def test_query_by_target(db_url: str) -> None:
    _study(db_url)
    reach = json.loads(runner.invoke(app, ["query", "--db", db_url, "--target", "8.5", "--format", "json"]).stdout)
    assert [(r["reachable"], r["speedup"], r["settings"]) for r in reach] == [(True, 9.7, _setting(5).as_dict())]
    far = runner.invoke(app, ["query", "--db", db_url, "--target", "14", "--format", "table"])
    assert "no (best 12.00x)" in far.output
    loose = json.loads(runner.invoke(app, ["query", "--db", db_url, "--target", "14", "--max-loss", "0.06",
                                           "--format", "json"]).stdout)
    assert loose[0]["reachable"] and loose[0]["settings"] == _setting(20).as_dict()


LEGACY = {
    "('SD1.5', 'DDIMScheduler', 50, 'upbound_speedup', 0.02)":
        {"cache_interval": 10, "cache_branch_id": 0, "ratio": 0.5, "max_downsample": 1, "time": 0.16, "speedup": 12.0,
         "score_loss": 0.019},
    "('SD1.5', 'DDIMScheduler', 50, 9.6, 0.02)":
        {"cache_interval": 5, "cache_branch_id": 0, "time": 0.2, "speedup": 9.7, "score_loss": 0.004},
    "('SDXL', 'DPMSolverMultistepScheduler', 25, 'upbound_speedup', 0.02)":
        {"cache_interval": 3, "cache_branch_id": 1, "time": 1.1, "speedup": 2.7, "score_loss": 0.012},
}


def test_legacy_round_trip_loses_nothing(db_url: str, tmp_path: Path) -> None:
    original = tmp_path / "search_params.json"
    original.write_text(json.dumps(LEGACY, indent=2))
    imported = runner.invoke(app, ["import", "--legacy", str(original), "--db", db_url])
    assert imported.exit_code == 0, imported.output
    assert "3 setting(s) and 1 target(s) imported" in imported.output
    exported = tmp_path / "again.json"
    result = runner.invoke(app, ["export", "--legacy", str(exported), "--db", db_url])
    assert result.exit_code == 0, result.output
    assert json.loads(exported.read_text()) == LEGACY
    rows = json.loads(runner.invoke(app, ["query", "--db", db_url, "--format", "json"]).stdout)
    assert {r["device"] for r in rows} == {"imported from search_params.json"}  # marked with their origin
    assert {r["quality_source"]["scorer"] for r in rows} == {"imported:search_params.json"}
    again = runner.invoke(app, ["import", "--legacy", str(original), "--db", db_url])
    assert "0 setting(s) and 0 target(s) imported" in again.output

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"('SD1.5', 'DDIMScheduler', 50, 'upbound_speedup', 0.02)": {"interval": 3, "time": 1,
                                                                                             "speedup": 2, "score_loss": 0}}))
    bad = runner.invoke(app, ["import", "--legacy", str(broken), "--db", db_url])
    assert bad.exit_code != 0 and "unknown parameter 'interval'" in bad.output


def test_serve_answers_the_queries_over_a_socket(sqlite_url: str) -> None:
    import threading
    import urllib.error
    import urllib.request

    from sweep.fronts.serve import make_server

    repo, _ = _study(sqlite_url)
    runner.invoke(app, ["targets", "--db", sqlite_url])
    server = make_server(sqlite_url, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"

    def get(path: str) -> tuple[int, object]:
        try:
            with urllib.request.urlopen(base + path, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    try:
        status, bounds = get("/upper-bounds?max_loss=0.02")
        assert status == 200 and [(b["speedup"], b["confirmed"]) for b in bounds] == [(12.0, True)]
        status, reach = get("/query?target=8.5")
        assert status == 200 and reach[0]["settings"] == _setting(5).as_dict()
        status, targets = get("/targets")
        assert status == 200 and sorted(t["target"] for t in targets) == [9.6, 12.0, 14.4]
        assert get("/status")[1]["speed"]["trials"]["done"] == 5
        assert get("/upper-bounds?environment=gpu")[0] == 200 and get("/upper-bounds?environment=TPU")[0] == 400
        assert get("/query")[0] == 400 and get("/upper-bounds?max_loss=2")[0] == 400
        assert get("/nothing")[0] == 404
    finally:
        server.shutdown()
        server.server_close()
