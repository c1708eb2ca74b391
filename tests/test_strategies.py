"""Search strategies: replays on the H100 landscape shipped as test data, and real runs on tiny pipelines."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from search_space.setting import AccelSetting
from storage import Repository
from storage.models import QualityTrialRow, SearchRow, SpeedTrialRow
from sweep.accelerators import describe
from sweep.errors import UsageError
from sweep.fronts.cli import app
from sweep.inputs import parse_duration
from sweep.study.catalogue import parse_space
from sweep.study.runner import Runner, SearchOptions
from sweep.study.strategies import Frontier, OptunaSearch
from sweep.study.strategies.base import Problem
from sweep.study.strategies.order import leq, lines_of
from sweep.study.strategies.replay import Landscape, replay
from tests.conftest import TINY_A_SPACE, quality_space, write_space

LANDSCAPE = Path(__file__).parent / "data" / "landscape-h100-sd15.json"
METRIC = "image_deviation"  # random weights: CLIP scores are undefined there, image deviation is measured

STRATEGY_SPACE = TINY_A_SPACE.replace("cache_interval = [2, 3]", "cache_interval = [2, 3, 4]")  # 11 settings


@pytest.fixture(scope="module")
def landscape() -> Landscape:
    return Landscape.load(LANDSCAPE)


def test_order_follows_each_parameters_aggressiveness(landscape: Landscape) -> None:
    lines = lines_of(landscape.problem(0.01, 0).settings)
    assert [ln.label() for ln in lines["deepcache"]] == [
        "deepcache[cache_branch_id=0]", "deepcache[cache_branch_id=1]", "deepcache[cache_branch_id=2]"]
    assert lines["deepcache"][0].values() == [2, 3, 4, 5, 6, 8, 10]
    by_key = {describe(p.setting): p.setting for p in landscape.points}
    mild, harsh = by_key["deepcache(cache_interval=3, cache_branch_id=1)"], by_key["deepcache(cache_interval=5, cache_branch_id=0)"]
    assert leq(mild, harsh) and not leq(harsh, mild)
    combo = by_key["deepcache(cache_interval=5, cache_branch_id=0) + tome(ratio=0.3, max_downsample=1)"]
    assert leq(harsh, combo) and not leq(combo, harsh)


@pytest.mark.parametrize("threshold", [0.0056, 0.0073, 0.0103])
def test_frontier_finds_the_grid_bound_in_a_fraction_of_the_grid(landscape: Landscape, threshold: float) -> None:
    grid = len(landscape.points)
    r = replay(Frontier, landscape, max_loss=threshold, seed=0, metric=METRIC)
    needed = r.trials_to_find(landscape, threshold, METRIC)
    assert needed is not None and needed <= 0.15 * grid
    assert r.result.best is not None and r.result.best.speedup == pytest.approx(r.bound)
    assert r.result.evaluated < 0.25 * grid
    assert any(line.startswith("axis deepcache[cache_branch_id=0]") for line in r.result.log)


def test_optuna_finds_the_grid_bound_within_its_budget(landscape: Landscape) -> None:
    grid = len(landscape.points)
    threshold = 0.0103
    for seed in range(3):
        r = replay(lambda: OptunaSearch(patience=15), landscape, max_loss=threshold, seed=seed, metric=METRIC)
        needed = r.trials_to_find(landscape, threshold, METRIC)
        assert needed is not None and needed <= 0.35 * grid, (seed, needed)


def test_replays_are_deterministic_for_a_seed(landscape: Landscape) -> None:
    def keys(make, seed: int, noise: float = 0.0) -> list[str]:  # type: ignore[no-untyped-def]
        r = replay(make, landscape, max_loss=0.0073, seed=seed, metric=METRIC, noise=noise)
        return [o.setting.key for o in r.order]

    make = lambda: OptunaSearch(patience=10)  # noqa: E731
    assert keys(make, 4) == keys(make, 4)
    assert keys(make, 4) != keys(make, 5)
    assert keys(Frontier, 1, noise=1.0) == keys(Frontier, 1, noise=1.0)


def test_budget_caps_the_trials(landscape: Landscape) -> None:
    r = replay(lambda: OptunaSearch(patience=50), landscape, max_loss=0.0073, seed=0, metric=METRIC, max_trials=7)
    assert r.result.evaluated == 7 and r.result.stop == "trial budget of 7 reached"


def test_optuna_starts_from_the_speed_models_predictions(landscape: Landscape) -> None:
    predicted = landscape.model_predictions()
    assert len(predicted) > 30  # every single-method setting, and the combinations the fitted terms cover
    ranked = Problem("", tuple(p.setting for p in landscape.points), 1.0, predicted=predicted).by_prediction(
        p.setting for p in landscape.points)
    for seed in range(3):  # speed only (random weights): the search looks for the fastest
        blind = replay(lambda: OptunaSearch(patience=15), landscape, max_loss=0.0, seed=seed, speed_only=True)
        primed = replay(lambda: OptunaSearch(patience=15), landscape, max_loss=0.0, seed=seed, speed_only=True,
                        predicted=predicted)
        # the first trials are the predicted fastest, in that order, in place of TPE's random start-up
        assert [o.setting for o in primed.order[:8]] == ranked[:8]
        fastest = max(p.speedup or 0.0 for p in landscape.points)
        found = [i for i, o in enumerate(primed.order, 1) if o.speedup == fastest]
        blind_found = [i for i, o in enumerate(blind.order, 1) if o.speedup == fastest]
        assert found and found[0] <= 8 and (not blind_found or blind_found[0] > 8), (seed, found, blind_found)
        assert "8 enqueued from the speed model's predictions" in primed.result.log[-1]
    # with a threshold the fastest are likely over it: the priors spread over the predicted speed-ups' ranks
    spread = replay(lambda: OptunaSearch(patience=15), landscape, max_loss=0.0103, seed=0, metric=METRIC,
                    predicted=predicted)
    first = [ranked.index(o.setting) for o in spread.order[:8]]
    assert first[0] == 0 and first[-1] == len(ranked) - 1 and first == sorted(first)


def test_frontier_walks_the_pair_the_model_predicts_fastest_first(landscape: Landscape) -> None:
    measured = {p.setting.key: p.speedup for p in landscape.points if p.speedup}
    # two oracle models: one with the combinations as measured, one with their order reversed
    reversed_combinations = {k: (1 / v if len(AccelSetting.from_key(k).methods) == 2 else v) for k, v in measured.items()}
    walked = {}
    for name, predicted in (("measured", measured), ("reversed", reversed_combinations)):
        r = replay(Frontier, landscape, max_loss=0.0103, seed=0, metric=METRIC, predicted=predicted)  # type: ignore[arg-type]
        assert r.result.best is not None and r.result.best.speedup == pytest.approx(r.bound)  # a prior, never the result
        walked[name] = [line.split(":")[0] for line in r.result.log if line.startswith("pair ")]
    assert walked["measured"] and walked["measured"][0] != walked["reversed"][0]


def _space(tmp_path: Path, text: str = STRATEGY_SPACE):  # type: ignore[no-untyped-def]
    path = write_space(tmp_path, text)
    return parse_space(tomllib.loads(path.read_text()), str(path))


def test_each_strategy_through_the_runner_finds_the_grid_bound(tmp_path: Path, sqlite_url: str,
                                                               local_weights: dict[str, str]) -> None:
    space = _space(tmp_path, quality_space(local_weights, prompts=4).replace("cache_interval = [2, 3]", "cache_interval = [2, 3, 4]"))
    repo = Repository(sqlite_url)
    grid = Runner(repo, "cpu").run(space, confirm_top=0)
    assert grid.new == 12  # baseline + 11 settings
    with repo.session() as s:
        losses = {q.setting_key: q.score_loss for q in s.query(QualityTrialRow).all() if q.status == "done"}
        speeds = {t.setting_key: t.first_speedup for t in s.query(SpeedTrialRow).all() if t.status == "done"}
    ordered = sorted(losses.values())
    threshold = ordered[len(ordered) // 2]  # a threshold that excludes half of the settings
    grid_best = max(speeds[k] for k, loss in losses.items() if loss <= threshold)

    for strategy in ("grid", "frontier", "optuna"):
        summary = Runner(repo, "cpu").run(space, search=SearchOptions(strategy, threshold, seed=1), confirm_top=0)
        assert summary.new == 0  # everything is stored: the strategies read, they do not measure again
        ((_, result),) = summary.searches
        assert result.best is not None
        if strategy == "frontier":
            # the frontier trusts the order of aggressiveness, which random-weight CLIP scores do not follow: it is
            # held to the best of what it looked at (its reach on a real landscape is tested by the replays above)
            seen = [o.setting.key for o in result.outcomes]
            assert len(seen) == len(set(seen)) == result.evaluated < 11
            assert result.best.speedup == max(speeds[k] for k in seen if losses[k] <= threshold)
        else:
            assert result.best.speedup == grid_best, strategy

    with repo.session() as s:
        searches = {r.strategy: r for r in s.query(SearchRow).all() if r.max_loss == threshold}
    assert set(searches) == {"grid", "frontier", "optuna"} and searches["frontier"].log
    study_name = searches["optuna"].study_name
    import optuna

    study = optuna.load_study(study_name=study_name, storage=sqlite_url)
    assert len([t for t in study.trials if t.state.is_finished()]) >= searches["optuna"].evaluated
    assert all("setting_key" in t.user_attrs for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "optuna"), "studies", "--storage", sqlite_url, "-f", "json"],
        capture_output=True, text=True, check=True,
    )
    assert study_name in [s["name"] for s in json.loads(listed.stdout)]
    assert study_name in _dashboard_study_names(sqlite_url)


def _dashboard_study_names(url: str) -> list[str]:
    """Serve optuna-dashboard's WSGI app on a real socket and read its study list."""
    import threading
    import urllib.request
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    import optuna_dashboard

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = make_server("127.0.0.1", 0, optuna_dashboard.wsgi(url), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/api/studies", timeout=30) as response:
            return [s["study_name"] for s in json.load(response)["study_summaries"]]
    finally:
        server.shutdown()


def test_frontier_on_a_fresh_database_measures_part_of_the_grid(tmp_path: Path, sqlite_url: str) -> None:
    result = CliRunner().invoke(app, [
        "upbound", str(write_space(tmp_path, STRATEGY_SPACE)), "--db", sqlite_url, "--device", "cpu",
        "--strategy", "frontier", "--max-loss", "0.5", "--confirm-top", "0", "--format", "json",
    ])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    repo = Repository(sqlite_url)
    with repo.session() as s:
        keys = [t.setting_key for t in s.query(SpeedTrialRow).all()]
        (search,) = s.query(SearchRow).all()
    # speed only (random weights): the frontier walks each axis to its fastest end and stops
    assert len(keys) == len(set(keys)) == search.evaluated < 11
    assert row["trials"] == len(keys) and row["kind"] == "speed map"


def test_optuna_budget_and_bad_durations(tmp_path: Path, sqlite_url: str) -> None:
    result = CliRunner().invoke(app, [
        "upbound", str(write_space(tmp_path, STRATEGY_SPACE)), "--db", sqlite_url, "--device", "cpu", "--quiet",
        "--strategy", "optuna", "--max-trials", "3", "--confirm-top", "0",
    ])
    assert result.exit_code == 0, result.output
    with Repository(sqlite_url).session() as s:
        assert s.query(SpeedTrialRow).count() == 3
    assert parse_duration("1h30m") == 5400 and parse_duration("90") == 90
    with pytest.raises(UsageError, match="not a duration"):
        parse_duration("ten minutes")
    bad = CliRunner().invoke(app, ["upbound", "--preset", "tiny", "--db", sqlite_url, "--time-budget", "soon"])
    assert bad.exit_code != 0 and "not a duration" in bad.output
