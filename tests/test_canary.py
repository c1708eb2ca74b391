"""The canary: before a run adds to a stored environment it re-times one of its speed baselines; a machine in
another state gets its new speeds kept apart (a state of the environment), never mixed with the stored ones
nor skipped as stored. Real tiny pipelines on the CPU; the stored state is set by scaling a stored time."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, update
from typer.testing import CliRunner

from search_space import defaults
from storage.models import EnvironmentRow, SpeedBaselineRow, SpeedTrialRow
from sweep.fronts.cli import app
from tests.conftest import tiny_speed_space

runner = CliRunner()


def space(tmp_path: Path, name: str, steps: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(tiny_speed_space(f"canary-{name}", steps=steps, cache_intervals="2"), encoding="utf-8")
    return path


def upbound(path: Path, db: str, *extra: str) -> str:
    # on a CPU the canary is asked for (on by default on GPUs only)
    asked = [] if "--no-canary" in extra else ["--canary"]
    result = runner.invoke(app, ["upbound", str(path), "--db", db, "--device", "cpu", "--quiet", "--confirm-top", "0",
                                 *asked, *extra])
    assert result.exit_code == 0, result.output
    return result.stderr


def counts(db: str) -> dict[str, object]:
    engine = create_engine(db)
    with engine.connect() as c:
        return {
            "environments": c.execute(select(EnvironmentRow.id, EnvironmentRow.device).order_by(EnvironmentRow.id)).all(),
            "baselines": c.execute(select(SpeedBaselineRow.environment_id, func.count()).group_by(SpeedBaselineRow.environment_id)
                                   .order_by(SpeedBaselineRow.environment_id)).all(),
            "trials": c.execute(select(SpeedTrialRow.environment_id, func.count()).group_by(SpeedTrialRow.environment_id)
                                .order_by(SpeedTrialRow.environment_id)).all(),
        }


def scale_stored_baselines(db: str, environment_id: int, factor: float) -> None:
    engine = create_engine(db)
    with engine.begin() as c:
        c.execute(update(SpeedBaselineRow).where(SpeedBaselineRow.environment_id == environment_id)
                  .values(time=SpeedBaselineRow.time * factor))


def test_a_machine_in_another_state_keeps_its_new_speeds_apart(sqlite_url: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    first, more, most = space(tmp_path, "a", "4"), space(tmp_path, "b", "4, 6"), space(tmp_path, "c", "4, 6, 8")
    assert "canary" not in upbound(first, sqlite_url)  # a new environment: nothing to compare with
    before = counts(sqlite_url)
    assert [e[0] for e in before["environments"]] == [1] and before["baselines"] == [(1, 1)]  # type: ignore[index]

    # the stored speeds were measured with the machine a hundred times faster than it is now (faster, not slower:
    # the tolerance is relative to the stored time, so a stored state far slower than now would match a run that
    # this shared CPU slows two- or threefold)
    scale_stored_baselines(sqlite_url, 1, 0.01)
    said = upbound(more, sqlite_url)
    assert said.count("canary:") == 1 and "not in the state" in said and "environment 2" in said, said
    after = counts(sqlite_url)
    assert after["environments"][1][1].endswith("[state 2]")  # type: ignore[index]
    # nothing added to the stored state; the new state measured both rows, the stored one again
    assert after["baselines"] == [(1, 1), (2, 2)] and after["trials"] == [(1, 1), (2, 2)], after

    assert "canary" not in upbound(more, sqlite_url)  # nothing missing: nothing re-timed
    # a new row: the canary matches state 2 (within a loose tolerance, up to 4x slower: this CPU is shared), not the
    # stored state (a 4x tolerance around 0.01 of today's time: the machine would have to run 25x faster)
    monkeypatch.setattr(defaults, "CANARY_TOLERANCE", 3.0)
    said = upbound(most, sqlite_url)
    assert "matches environment 2" in said, said
    final = counts(sqlite_url)
    assert len(final["environments"]) == 2 and final["baselines"] == [(1, 1), (2, 3)], final  # type: ignore[arg-type]


def test_a_machine_in_its_stored_state_adds_to_its_environment_and_the_canary_can_be_left_out(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    upbound(space(tmp_path, "a", "4"), sqlite_url)
    monkeypatch.setattr(defaults, "CANARY_TOLERANCE", 10.0)  # any state this shared CPU is in matches
    assert "canary" not in upbound(space(tmp_path, "b", "4, 6"), sqlite_url)
    scale_stored_baselines(sqlite_url, 1, 100.0)  # would not match, but the canary is left out
    assert "canary" not in upbound(space(tmp_path, "c", "4, 6, 8"), sqlite_url, "--no-canary")
    final = counts(sqlite_url)
    assert [e[0] for e in final["environments"]] == [1] and final["baselines"] == [(1, 3)], final  # type: ignore[index]


def test_the_canary_is_refused_where_workers_would_ignore_it(sqlite_url: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["upbound", str(space(tmp_path, "a", "4")), "--db", sqlite_url, "--device", "cpu",
                                 "--workers", "1", "--canary"])
    assert result.exit_code == 2 and "--canary and --no-shared-estimates apply to a single process" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_canary_is_off_by_default_on_a_cpu(sqlite_url: str, tmp_path: Path) -> None:
    upbound(space(tmp_path, "a", "4"), sqlite_url)
    scale_stored_baselines(sqlite_url, 1, 100.0)  # would not match
    result = runner.invoke(app, ["upbound", str(space(tmp_path, "b", "4, 6")), "--db", sqlite_url, "--device", "cpu",
                                 "--quiet", "--confirm-top", "0"])
    assert result.exit_code == 0 and "canary" not in result.stderr, result.output
    assert [e[0] for e in counts(sqlite_url)["environments"]] == [1]
