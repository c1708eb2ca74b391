"""The upper bound as a join of speed and quality, on hand-written records, against SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from typer.testing import CliRunner

from search_space.base_config import BaseConfig
from search_space.setting import AccelSetting
from storage import Repository, Scope
from storage.bounds import contenders
from storage.measurements import SpeedResult
from sweep.accelerators import DeepCache, ToMe
from sweep.fronts.cli import app

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _setting(interval: int | None = None, ratio: float | None = None) -> AccelSetting:
    methods = {}
    if interval is not None:
        methods["deepcache"] = DeepCache.normalise({"cache_interval": interval})
    if ratio is not None:
        methods["tome"] = ToMe.normalise({"ratio": ratio})
    return AccelSetting.of(methods)


def _scope(repo: Repository, steps: int, *, device: str = "gpu", weights: str = "pretrained", scorer: str = "ViT-g-14") -> Scope:
    base = BaseConfig("SD1.5", "ref" if weights == "pretrained" else "random", weights, "DDIMScheduler", steps, 512, 512,  # type: ignore[arg-type]
                      "float16", 1)
    env = repo.ensure_environment(f'{{"device":"{device}"}}', device, {"torch": "x"})
    quality = repo.ensure_quality_protocol(f"q-{scorer}", prompt_source="bundled", prompts=["a", "b"], prompts_sha256="0" * 64,
                                           seed=0, scorer=f"open_clip:{scorer}:laion2b_s34b_b88k")
    timing = repo.ensure_timing_protocol("t", images=4, policy={"min_pairs": 6})
    return repo.scope(base, env, quality, timing)


def _speed_baseline(repo: Repository, scope: Scope, time: float = 2.0) -> None:
    repo.measurements.save([repo.measurements.speed_baseline_row(
        scope, time=time, time_spread=0.0, batch_seconds=[time], source="timing set", image_digests=["d"],
        weights="random", worker="t")])


def _quality_baseline(repo: Repository, scope: Scope) -> None:
    repo.measurements.save([repo.measurements.quality_baseline_row(scope, scores=[30.0, 30.0], image_digests=["d", "e"],
                                                                   worker="t")])


def _speed(repo: Repository, scope: Scope, setting: AccelSetting, speedup: float, *, half: float = 0.05,
           status: str = "done", weights: str = "random", weights_key: str = "") -> bool:
    (ok,) = repo.measurements.save([repo.measurements.speed_trial_row(
        scope, settings=setting.as_dict(), setting_key=setting.key, status=status, weights=weights, weights_key=weights_key,
        first_speedup=speedup if status == "done" else None, first_ci_half_width=half, first_source="timing set",
        first_time=2.0 / speedup, first_baseline_time=2.0, worker="t", started_at=NOW)])
    return ok


def _quality(repo: Repository, scope: Scope, setting: AccelSetting, loss: float, status: str = "done") -> None:
    repo.measurements.save([repo.measurements.quality_trial_row(
        scope, settings=setting.as_dict(), setting_key=setting.key, status=status, score_loss=loss,
        scores=[30 * (1 - loss)] * 2, prompts_used=2, rejected_at=0.02 if status == "rejected" else None,
        worker="t", started_at=NOW)])


def _precise(repo: Repository, scope: Scope, setting: AccelSetting, speedup: float, half: float = 0.01,
             stop: str = "target width") -> None:
    repo.measurements.save_precise(repo.measurements.precise_statement(
        scope, setting.key, speedup=speedup, ci_half_width=half, pairs=12, time=2.0 / speedup, baseline_time=2.0,
        time_spread=0.0, warmup_runs=2, precise_stop=stop))


def _study(repo: Repository, scope: Scope) -> None:
    _speed_baseline(repo, scope)
    _quality_baseline(repo, scope)
    for setting, speedup, loss, status in (
        (_setting(2), 1.8, 0.005, "done"),
        (_setting(3), 2.5, 0.02, "done"),           # exactly at the threshold: eligible
        (_setting(3, 0.5), 2.5, 0.015, "done"),     # same speed-up, less loss: preferred
        (_setting(5), 4.0, 0.0201, "done"),         # just over the threshold
        (_setting(6), 5.0, 0.30, "rejected"),       # stopped early: over the threshold
    ):
        assert _speed(repo, scope, setting, speedup)
        _quality(repo, scope, setting, loss, status)
    assert _speed(repo, scope, _setting(8), 9.0, status="failed")


def test_upper_bound_is_the_fastest_setting_whose_known_loss_is_within_max_loss(db_url: str) -> None:
    repo = Repository(db_url)
    scope = _scope(repo, 50)
    _study(repo, scope)
    assert not _speed(repo, scope, _setting(2), 1.8), "a stored key is never stored twice"

    (bound,) = repo.bounds.rows(0.02)
    assert bound.quality_known and bound.speedup == pytest.approx(2.5)
    assert bound.score_loss == pytest.approx(0.015) and bound.settings == _setting(3, 0.5).as_dict()
    assert not bound.confirmed and bound.trials == 5  # usable speeds; the failed one is not
    row = bound.as_row()
    assert row["timing"] == "first estimate" and row["kind"] == "upper bound"
    assert row["quality_source"]["scorer"] == "open_clip:ViT-g-14:laion2b_s34b_b88k"

    (loose,) = repo.bounds.rows(0.05)
    assert loose.speedup == pytest.approx(4.0)
    (strict,) = repo.bounds.rows(0.001)  # quality known and nothing within it: the baseline, said plainly
    assert (strict.speedup, strict.settings, strict.score_loss) == (1.0, {}, 0.0)
    (speed_map,) = repo.bounds.rows(0.02, speed_only=True)
    assert not speed_map.quality_known and speed_map.speedup == pytest.approx(5.0) and speed_map.score_loss is None
    assert repo.status() == {"base_configs": 1, "speed": {"baselines": 1, "trials": {"done": 5, "failed": 1}, "precise": 0,
                                                                     "below_leader": 0},
                             "quality": {"baselines": 1, "trials": {"done": 4, "rejected": 1}}, "tasks": {}}


def test_without_quality_the_row_is_a_speed_map_never_a_one_x_bound(db_url: str) -> None:
    repo = Repository(db_url)
    scope = _scope(repo, 20, weights="random")
    _speed_baseline(repo, scope)
    for setting, speedup in ((_setting(2), 1.6), (_setting(3), 2.1), (_setting(3, 0.5), 2.3)):
        _speed(repo, scope, setting, speedup)
    (row,) = [b.as_row() for b in repo.bounds.rows(0.02)]
    assert (row["kind"], row["quality_known"], row["score_loss"], row["quality_source"]) == ("speed map", False, None, None)
    assert row["speedup"] == pytest.approx(2.3) and row["settings"] == _setting(3, 0.5).as_dict()


def test_quality_from_another_machine_joins_the_speed_measured_here(db_url: str) -> None:
    repo = Repository(db_url)
    here = _scope(repo, 25, device="H100", weights="random")      # the target GPU: random weights, speed only
    there = _scope(repo, 25, device="small GPU", weights="pretrained")  # where the real weights are: quality
    assert here.speed_config_id == there.speed_config_id and here.base_config_id != there.base_config_id
    _speed_baseline(repo, here)
    for setting, speedup in ((_setting(2), 1.7), (_setting(3), 2.4), (_setting(5), 3.9)):
        _speed(repo, here, setting, speedup)
    _quality_baseline(repo, there)
    for setting, loss in ((_setting(2), 0.004), (_setting(3), 0.012), (_setting(5), 0.05)):
        _quality(repo, there, setting, loss)

    h100 = repo.environment_ids("H100")
    (bound,) = repo.bounds.rows(0.02, environment_ids=h100)
    row = bound.as_row()
    assert row["quality_known"] and row["speedup"] == pytest.approx(2.4) and row["settings"] == _setting(3).as_dict()
    assert row["device"] == "H100" and row["quality_source"]["device"] == "small GPU"
    assert row["speed_source"]["weights"] == "random" and row["quality_source"]["weights"] == "pretrained"


def test_precise_timing_is_published_and_settles_the_contenders(db_url: str) -> None:
    repo = Repository(db_url)
    scope = _scope(repo, 25)
    _speed_baseline(repo, scope)
    _quality_baseline(repo, scope)
    for setting, speedup in ((_setting(5), 3.0), (_setting(3), 2.9), (_setting(2), 1.5)):
        _speed(repo, scope, setting, speedup, half=0.05)
        _quality(repo, scope, setting, 0.01)
    speeds = repo.measurements.speeds(scope)
    quality = repo.measurements.qualities(scope)
    # 3.0 ±5% reaches down to 2.85; 2.9 ±5% reaches up to 3.05: both may be the bound, 1.5 cannot
    assert [s.setting_key for s in contenders(speeds, quality, 0.02)] == [_setting(5).key, _setting(3).key]
    # the leader was lucky: timed precisely, it is slower than the runner-up's first estimate
    _precise(repo, scope, _setting(5), 2.6)
    (bound,) = repo.bounds.rows(0.02)
    assert (bound.speedup, bound.confirmed, bound.settings) == (2.9, False, _setting(3).as_dict())
    _precise(repo, scope, _setting(3), 2.8)
    (bound,) = repo.bounds.rows(0.02)
    assert (bound.speedup, bound.confirmed, bound.as_row()["first_speedup"]) == (2.8, True, 2.9)
    speeds = repo.measurements.speeds(scope)
    assert [s.setting_key for s in contenders(speeds, quality, 0.02)] == [_setting(3).key]  # settled


def test_contenders_of_a_speed_map_are_the_fastest(db_url: str) -> None:
    results = {
        key: SpeedResult(key, "done", None, "random", speedup, half, "timing set", 1.0, 1.0)
        for key, speedup, half in (("a", 2.0, 0.1), ("b", 1.7, 0.1), ("c", 1.5, 0.1))
    }
    assert [s.setting_key for s in contenders(results, None, 0.02)] == ["a", "b"]  # 1.7 × 1.1 ≥ 2.0 × 0.9
    assert contenders({}, None, 0.02) == []


def _joined_study(repo: Repository) -> tuple[Scope, Scope]:
    """Speed on an H100 with random weights (repeat runs differ by 3 levels); quality from another machine."""
    here = _scope(repo, 25, device="H100", weights="random")
    there = _scope(repo, 25, device="small GPU", weights="pretrained")
    repo.measurements.save([repo.measurements.speed_baseline_row(
        here, time=2.0, time_spread=0.0, batch_seconds=[2.0], source="timing set", image_digests=["d"],
        weights="random", worker="t", repeat_max_pixel_diff=3)])
    repo.measurements.save([repo.measurements.quality_baseline_row(
        there, scores=[30.0, 30.0], image_digests=["d", "e"], worker="t", repeat_max_pixel_diff=0)])
    for setting, speedup, loss, low, high in ((_setting(2), 1.7, 0.004, None, None), (_setting(3), 2.4, 0.012, 0.008, 0.016),
                                              (_setting(5), 3.9, 0.05, None, None)):
        _speed(repo, here, setting, speedup)
        repo.measurements.save([repo.measurements.quality_trial_row(
            there, settings=setting.as_dict(), setting_key=setting.key, status="done", score_loss=loss, loss_low=low,
            loss_high=high, scores=[30 * (1 - loss)] * 2, prompts_used=2, worker="t", started_at=NOW)])
    _precise(repo, here, _setting(3), 2.3)
    return here, there


SPEED_CONFIG = {"pipeline": "SD1.5", "scheduler": "DDIMScheduler", "steps": 25, "height": 512, "width": 512,
                "dtype": "float16", "batch_size": 1, "device": "H100"}
QUALITY_SOURCE = {"model": "ref", "weights": "pretrained", "scorer": "open_clip:ViT-g-14:laion2b_s34b_b88k",
                  "prompts": "bundled", "prompt_count": 2, "device": "small GPU"}


def test_a_bound_row_states_every_field_exactly(db_url: str) -> None:
    repo = Repository(db_url)
    here, _ = _joined_study(repo)
    (bound,) = repo.bounds.rows(0.02)
    assert bound.as_row() == {
        **SPEED_CONFIG, "environment_id": here.environment_id, "quality_known": True, "kind": "upper bound",
        "speed_source": {"device": "H100", "weights": "random", "timing": "precise", "weight_dependent_random": False},
        "quality_source": QUALITY_SOURCE, "max_loss": 0.02, "speedup": 2.3, "first_speedup": 2.4, "confirmed": True,
        "timing": "precise", "ci_half_width": 0.01, "ci_from": "pairs", "score_loss": 0.012, "score_loss_ci": [0.008, 0.016],
        "time": 2.0 / 2.3, "baseline_time": 2.0, "settings": _setting(3).as_dict(), "trials": 3,
        "deterministic": True, "repeat_max_pixel_diff": 0,  # the quality source's images decide determinism
        "host": None, "cpu_bound": False,  # stored without the host's state (as rows from before 0008 are)
    }
    (speed_map,) = repo.bounds.rows(0.02, speed_only=True)
    assert speed_map.as_row() == {
        **SPEED_CONFIG, "environment_id": here.environment_id, "quality_known": False, "kind": "speed map",
        "speed_source": {"device": "H100", "weights": "random", "timing": "first estimate",
                         "weight_dependent_random": False},
        "quality_source": None, "max_loss": 0.02, "speedup": 3.9, "first_speedup": 3.9, "confirmed": False,
        "timing": "first estimate", "ci_half_width": 0.05, "ci_from": "own pairs", "score_loss": None,
        "score_loss_ci": None,
        "time": 2.0 / 3.9, "baseline_time": 2.0, "settings": _setting(5).as_dict(), "trials": 3,
        "deterministic": False, "repeat_max_pixel_diff": 3, "host": None, "cpu_bound": False,
    }


def test_rows_by_target_show_the_least_loss_setting_reaching_it(db_url: str) -> None:
    repo = Repository(db_url)
    _joined_study(repo)
    (bound,) = repo.bounds.rows(0.02)
    (at_two,) = repo.bounds.by_target(2.0, 0.02)
    assert at_two == {**bound.as_row(), "target": 2.0, "reachable": True, "decision": "reached"}  # the bound only
    (easy,) = repo.bounds.by_target(1.5, 0.02)  # 1.7 at 0.4% loss beats 2.3 at 1.2%
    assert easy == {**bound.as_row(), "target": 1.5, "reachable": True, "decision": "reached", "speedup": 1.7,
                    "first_speedup": 1.7,
                    "confirmed": False, "timing": "first estimate", "ci_half_width": 0.05, "ci_from": "own pairs",
                    "score_loss": 0.004,
                    "score_loss_ci": None, "time": 2.0 / 1.7, "settings": _setting(2).as_dict(),
                    "speed_source": {**bound.as_row()["speed_source"], "timing": "first estimate"}}  # type: ignore[dict-item]
    assert repo.bounds.reaching(bound, 1.7) is not None and repo.bounds.reaching(bound, 2.33) is None
    # 2.3x ±1% neither reaches 2.31 nor misses it: borderline, said so, never a plain yes or no
    (edge,) = repo.bounds.by_target(2.31, 0.02)
    assert (edge["decision"], edge["reachable"], edge["speedup"]) == ("borderline", True, 2.3)
    (out_of_reach,) = repo.bounds.by_target(3.0, 0.02)  # 3.9 is over max-loss
    assert out_of_reach == {**bound.as_row(), "target": 3.0, "reachable": False, "decision": "not reached"}
    (loose,) = repo.bounds.by_target(3.0, 0.05)
    assert (loose["reachable"], loose["speedup"], loose["score_loss"]) == (True, 3.9, 0.05)
    assert repo.bounds.by_target(2.0, 0.02, environment_ids=repo.environment_ids("small GPU")) == []  # no speed there


def test_a_timing_made_while_the_gpu_was_mostly_idle_is_marked_cpu_bound(db_url: str) -> None:
    repo = Repository(db_url)
    scope = _scope(repo, 20, weights="random")
    _speed_baseline(repo, scope)
    host = {"cpu": "x", "cpus": 16, "cpu_seconds_per_image": 0.9, "steal_seconds_per_image": 0.2, "gpu_busy": 0.31}
    repo.measurements.save([repo.measurements.speed_trial_row(
        scope, settings=_setting(3).as_dict(), setting_key=_setting(3).key, status="done", weights="random",
        first_speedup=1.4, first_ci_half_width=0.05, first_source="paired timing set", first_time=1.0,
        first_baseline_time=1.4, first_host=host, worker="t", started_at=NOW)])
    (row,) = [b.as_row() for b in repo.bounds.rows(0.02)]
    assert row["host"] == host and row["cpu_bound"] is True
    table = CliRunner().invoke(app, ["query", "--db", db_url])
    assert "first est. ‡" in table.stdout and "‡ CPU-bound: timed while the GPU was busy under 50%" in " ".join(
        table.stdout.split())
    _precise(repo, scope, _setting(3), 1.5)  # the precise timing's own host state (none recorded) decides now
    (row,) = [b.as_row() for b in repo.bounds.rows(0.02)]
    assert row["host"] is None and row["cpu_bound"] is False


def test_a_timing_settled_below_the_leader_is_never_shown_as_precise(db_url: str) -> None:
    """Stopped because its interval fell under the leader's: where it leads (the leader is out at a stricter
    threshold) its row says ``below leader`` and the bound is not confirmed; against a target it is decided by its
    own, wide interval."""
    repo = Repository(db_url)
    here, _ = _joined_study(repo)
    _precise(repo, here, _setting(2), 1.6, half=0.12, stop="below leader")  # 1.6x ±12%, settled under 2.3x
    (row,) = [b.as_row() for b in repo.bounds.rows(0.01)]  # 2.3x loses 1.2%: out at 1%, 1.6x leads
    assert (row["speedup"], row["timing"], row["confirmed"]) == (1.6, "below leader", False)
    assert row["speed_source"]["timing"] == "below leader"  # type: ignore[index]
    (full,) = [b.as_row() for b in repo.bounds.rows(0.02)]
    assert (full["speedup"], full["timing"], full["confirmed"]) == (2.3, "precise", True)
    (at,) = repo.bounds.by_target(1.5, 0.01)
    assert at["decision"] == "borderline"  # 1.6 × (1 − 0.12) = 1.41 < 1.5: not shown as reaching it for sure


def test_a_weight_dependent_speed_from_random_weights_reaches_a_target_only_when_asked(db_url: str) -> None:
    repo = Repository(db_url)
    here, there = _joined_study(repo)
    dbcache_like = _setting(4)
    _speed(repo, here, dbcache_like, 3.0, weights_key="random")
    _quality(repo, there, dbcache_like, 0.01)
    (plain,) = repo.bounds.by_target(2.5, 0.02)
    assert not plain["reachable"] and plain["speedup"] == 2.3
    (asked,) = repo.bounds.by_target(2.5, 0.02, weight_dependent=True)
    assert asked["reachable"] and asked["settings"] == dbcache_like.as_dict()
    assert asked["speed_source"]["weight_dependent_random"] is True  # type: ignore[index]


def test_rows_and_speeds_keep_each_scope_apart(db_url: str) -> None:
    repo = Repository(db_url)
    a, b = _scope(repo, 25, device="gpu"), _scope(repo, 50, device="gpu")
    other_env = _scope(repo, 25, device="other gpu")
    for scope, speedup in ((a, 2.0), (b, 3.0), (other_env, 4.0)):
        _speed_baseline(repo, scope, time=speedup)
        _quality_baseline(repo, scope)
        _speed(repo, scope, _setting(int(speedup)), speedup)
        _quality(repo, scope, _setting(int(speedup)), 0.01)
    only_b = repo.bounds.rows(0.02, speed_config_ids=[b.speed_config_id])
    assert [(r.speed_config.steps, r.speedup) for r in only_b] == [(50, 3.0)]
    both = repo.bounds.rows(0.02, speed_config_ids=[a.speed_config_id], environment_ids=repo.environment_ids("gpu"))
    assert sorted(r.speedup for r in both) == [2.0, 4.0]  # one speed configuration, two environments
    for bound in repo.bounds.rows(0.02):
        assert list(repo.bounds.speeds(bound)) == [_setting(int(bound.speedup)).key]  # type: ignore[arg-type]
        assert bound.as_row()["baseline_time"] == 2.0  # the setting's own first estimate's baseline
        assert not bound.speed_imported and bound.quality is not None and not bound.quality.imported


def test_a_scope_with_only_its_baseline(db_url: str) -> None:
    repo = Repository(db_url)
    scope = _scope(repo, 25, weights="random")
    _speed_baseline(repo, scope, time=1.5)
    (bound,) = repo.bounds.rows(0.02)
    row = bound.as_row()
    assert (row["speedup"], row["timing"], row["time"], row["baseline_time"], row["ci_half_width"]) == (None, None, 1.5, 1.5, None)
    assert (row["first_speedup"], row["settings"], row["trials"]) == (None, {}, 0)


def test_imported_sources_and_random_scorers(db_url: str) -> None:
    repo = Repository(db_url)
    base = BaseConfig("SD1.5", "ref", "pretrained", "DDIMScheduler", 25, 512, 512, "float16", 1)
    env = repo.ensure_environment("imported:abc", "imported from x.json", {})
    quality = repo.ensure_quality_protocol("imported:abc", prompt_source="x.json", prompts=[], prompts_sha256="",
                                           seed=0, scorer="imported:x.json")
    timing = repo.ensure_timing_protocol("imported:abc", images=0, policy={})
    imported = repo.scope(base, env, quality, timing)
    _speed_baseline(repo, imported)
    _quality_baseline(repo, imported)
    _speed(repo, imported, _setting(3), 2.0)
    _quality(repo, imported, _setting(3), 0.01)
    (bound,) = repo.bounds.rows(0.02)
    assert bound.speed_imported and bound.quality is not None and bound.quality.imported

    random_scorer = _scope(repo, 30, scorer="ViT-B-32:random")
    random_scorer = repo.scope(BaseConfig("SD1.5", "ref", "pretrained", "DDIMScheduler", 30, 512, 512, "float16", 1),
                               random_scorer.environment_id,
                               repo.ensure_quality_protocol("q-random", prompt_source="bundled", prompts=["a", "b"],
                                                            prompts_sha256="0" * 64, seed=0, scorer="open_clip:ViT-B-32:random"),
                               random_scorer.timing_protocol_id)
    _speed_baseline(repo, random_scorer)
    _quality_baseline(repo, random_scorer)
    _speed(repo, random_scorer, _setting(3), 2.0)
    _quality(repo, random_scorer, _setting(3), 0.5)
    (unreal,) = [b for b in repo.bounds.rows(0.02) if b.speed_config.steps == 30]
    assert not unreal.quality_known  # a random scorer's numbers are never quality
    (asked,) = [b for b in repo.bounds.rows(0.02, unreal_quality=True) if b.speed_config.steps == 30]
    assert asked.quality_known and asked.speedup == 1.0  # benchmarks only: its 50% "loss" is over the bound


def test_ties_in_speed_go_to_the_least_loss_and_weight_dependent_speeds_wait_to_be_asked(db_url: str) -> None:
    repo = Repository(db_url)
    here, there = _joined_study(repo)
    # same speed-up as the bound's first estimate; its key sorts first, its loss is larger
    first_key = _setting(1)
    _speed(repo, here, first_key, 2.3)
    _quality(repo, there, first_key, 0.019)
    assert first_key.key < _setting(3).key
    (bound,) = repo.bounds.rows(0.02)
    assert bound.settings == _setting(3).as_dict()
    dbcache_like = _setting(4)
    _speed(repo, here, dbcache_like, 3.0, weights_key="random")
    _quality(repo, there, dbcache_like, 0.01)
    assert repo.bounds.rows(0.02)[0].speedup == 2.3
    assert repo.bounds.rows(0.02, weight_dependent=True)[0].speedup == 3.0


def test_contenders_are_feasible_and_include_the_touching_interval(db_url: str) -> None:
    from storage.measurements import QualityResult

    def speed(key: str, speedup: float, half: float) -> SpeedResult:
        return SpeedResult(key, "done", None, "random", speedup, half, "timing set", 1.0, 1.0)

    speeds = {"lead": speed("lead", 2.0, 0.25), "touch": speed("touch", 1.0, 0.5), "fast": speed("fast", 5.0, 0.0)}
    quality = {k: QualityResult(k, "done", None, loss, None, None, 2) for k, loss in
               (("lead", 0.01), ("touch", 0.01), ("fast", 0.5))}
    # "fast" is over max-loss; "touch" reaches up to 1.0 × 1.5 = 1.5, exactly the leader's lower end 2.0 × 0.75
    assert [s.setting_key for s in contenders(speeds, quality, 0.02)] == ["lead", "touch"]


def test_the_least_loss_setting_reaching_a_target_and_ties_to_the_faster(db_url: str) -> None:
    repo = Repository(db_url)
    speed_map = _scope(repo, 20, device="gpu", weights="random")  # listed first, no quality: skipped, not the end
    _speed_baseline(repo, speed_map)
    _speed(repo, speed_map, _setting(2), 1.9)
    scope = _scope(repo, 25, device="gpu")
    _speed_baseline(repo, scope)
    _quality_baseline(repo, scope)
    for setting, speedup, loss in ((_setting(2), 1.6, 0.01), (_setting(3), 2.2, 0.01), (_setting(5), 3.0, 0.015)):
        _speed(repo, scope, setting, speedup)
        _quality(repo, scope, setting, loss)
    (row,) = repo.bounds.by_target(1.5, 0.02)
    assert (row["reachable"], row["speedup"], row["settings"]) == (True, 2.2, _setting(3).as_dict())  # equal loss: faster
    (row,) = repo.bounds.by_target(3.0, 0.02)
    assert (row["reachable"], row["speedup"]) == (True, 3.0)  # reaching exactly counts


def test_each_bound_reads_its_own_timing_protocol_and_quality_source(db_url: str) -> None:
    repo = Repository(db_url)
    scope = _scope(repo, 25)
    other_timing = repo.scope(_base := BaseConfig("SD1.5", "ref", "pretrained", "DDIMScheduler", 25, 512, 512, "float16", 1),
                              scope.environment_id, scope.quality_protocol_id,
                              repo.ensure_timing_protocol("t2", images=8, policy={"min_pairs": 6}))
    other_quality = repo.scope(_base, scope.environment_id,
                               repo.ensure_quality_protocol("q2", prompt_source="bundled", prompts=["c", "d"],
                                                            prompts_sha256="1" * 64, seed=1, scorer="open_clip:ViT-g-14:x"),
                               scope.timing_protocol_id)
    for s_, speedup in ((scope, 2.0), (other_timing, 3.0)):
        _speed_baseline(repo, s_)
        _speed(repo, s_, _setting(int(speedup)), speedup)
    for q_, loss in ((scope, 0.01), (other_quality, 0.015)):
        _quality_baseline(repo, q_)
        for k in (2, 3):
            _quality(repo, q_, _setting(k), loss)
    bounds = repo.bounds.rows(0.02)
    assert len(bounds) == 4  # 2 timing protocols × 2 quality sources
    for bound in bounds:
        assert list(repo.bounds.speeds(bound)) == [_setting(int(bound.speedup)).key]  # type: ignore[arg-type]
        qualities = repo.bounds.qualities(bound)
        assert qualities is not None and {q.score_loss for q in qualities.values()} == {bound.score_loss}


def test_a_random_scorer_listed_first_does_not_hide_a_real_source(db_url: str) -> None:
    repo = Repository(db_url)
    unreal = _scope(repo, 25, scorer="ViT-B-32:random")
    unreal = repo.scope(BaseConfig("SD1.5", "ref", "pretrained", "DDIMScheduler", 25, 512, 512, "float16", 1),
                        unreal.environment_id,
                        repo.ensure_quality_protocol("q-random", prompt_source="bundled", prompts=["a", "b"],
                                                     prompts_sha256="0" * 64, seed=0, scorer="open_clip:ViT-B-32:random"),
                        unreal.timing_protocol_id)
    _quality_baseline(repo, unreal)  # stored first
    real = _scope(repo, 25)
    _quality_baseline(repo, real)
    _speed_baseline(repo, real)
    _speed(repo, real, _setting(3), 2.5)
    _quality(repo, real, _setting(3), 0.01)
    (bound,) = repo.bounds.rows(0.02)
    assert bound.quality_known and bound.speedup == 2.5


def test_a_weight_dependent_speed_holds_only_for_the_weights_it_was_measured_with(db_url: str) -> None:
    repo = Repository(db_url)
    scope = _scope(repo, 25)  # quality of model "ref"
    _speed_baseline(repo, scope)
    _quality_baseline(repo, scope)
    for setting, weights_key, speedup in ((_setting(2), "", 1.5), (_setting(3), "other-model", 4.0), (_setting(5), "ref", 2.5)):
        _speed(repo, scope, setting, speedup, weights=weights_key or "ref", weights_key=weights_key)
        _quality(repo, scope, setting, 0.01)
    (bound,) = repo.bounds.rows(0.02)
    assert bound.speedup == 2.5  # 4.0 was measured with other weights: it says nothing of "ref"'s speed
    assert sorted(repo.bounds.speeds(bound)) == sorted([_setting(2).key, _setting(5).key])


def test_speeds_of_a_speed_map_and_qualities_of_each_model(db_url: str) -> None:
    repo = Repository(db_url)
    scope = _scope(repo, 25, weights="random")
    _speed_baseline(repo, scope)
    _speed(repo, scope, _setting(3), 2.0)
    (speed_map,) = repo.bounds.rows(0.02)
    assert list(repo.bounds.speeds(speed_map)) == [_setting(3).key] and repo.bounds.qualities(speed_map) is None
    # two models' quality under one protocol, for the same speed configuration: each bound reads its own
    for model, loss in (("ref", 0.01), ("ref2", 0.015)):
        q = repo.scope(BaseConfig("SD1.5", model, "pretrained", "DDIMScheduler", 25, 512, 512, "float16", 1),
                       scope.environment_id, scope.quality_protocol_id, scope.timing_protocol_id)
        _quality_baseline(repo, q)
        _quality(repo, q, _setting(3), loss)
    bounds = [b for b in repo.bounds.rows(0.02) if b.quality_known]
    assert sorted((b.quality.base.model, b.score_loss) for b in bounds) == [("ref", 0.01), ("ref2", 0.015)]  # type: ignore[union-attr]
    for b in bounds:
        assert {q.score_loss for q in repo.bounds.qualities(b).values()} == {b.score_loss}  # type: ignore[union-attr]


def test_asked_for_weight_dependent_speeds_only_random_weights_join_in(db_url: str) -> None:
    repo = Repository(db_url)
    scope = _scope(repo, 25)  # quality of model "ref"
    _speed_baseline(repo, scope)
    _quality_baseline(repo, scope)
    for setting, weights_key, speedup in ((_setting(3), "other-model", 4.0), (_setting(5), "random", 2.5)):
        _speed(repo, scope, setting, speedup, weights=weights_key, weights_key=weights_key)
        _quality(repo, scope, setting, 0.01)
    (bound,) = repo.bounds.rows(0.02, weight_dependent=True)
    assert bound.speedup == 2.5  # random weights' speed joins when asked; another model's never does
