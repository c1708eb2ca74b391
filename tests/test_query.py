"""Upper-bound queries on hand-written trials, against SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from search_space.base_config import BaseConfig
from search_space.setting import AccelSetting
from storage import Repository, Scope, TrialRecord
from sweep.accelerators import DeepCache, ToMe

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _setting(interval: int | None = None, ratio: float | None = None) -> AccelSetting:
    methods = {}
    if interval is not None:
        methods["deepcache"] = DeepCache.normalise({"cache_interval": interval})
    if ratio is not None:
        methods["tome"] = ToMe.normalise({"ratio": ratio})
    return AccelSetting.of(methods)


def _scope(repo: Repository, steps: int) -> Scope:
    base = BaseConfig("SD1.5", "ref", "pretrained", "DDIMScheduler", steps, 512, 512, "float16", 1)
    env = repo.ensure_environment('{"device":"gpu"}', "gpu", {"torch": "x"})
    proto = repo.ensure_protocol("p", prompt_source="bundled", prompts=["a"], prompts_sha256="0" * 64, seed=0,
                                 timing={"min_pairs": 6}, scorer="open_clip:ViT-g-14:laion2b_s34b_b88k", scorer_random=False)
    return Scope(repo.ensure_base_config(base), env, proto)


def _trial(setting: AccelSetting, speedup: float, loss: float, status: str = "done") -> TrialRecord:
    return TrialRecord(setting, status, "test", NOW, time=2.0 / speedup, time_spread=0.0, speedup=speedup,
                       clip_score=30 * (1 - loss), score_loss=loss, n_images=1, patched_modules=1)


def test_upper_bound_is_the_fastest_trial_within_the_loss(db_url: str) -> None:
    repo = Repository(db_url)
    scope = _scope(repo, 50)
    baseline = repo.save_baseline(scope, time=2.0, time_spread=0.1, clip_score=30.0, image_digests=["d"], worker="t")
    trials = [
        _trial(_setting(2), 1.8, 0.005),
        _trial(_setting(3), 2.5, 0.02),          # exactly at the threshold: eligible
        _trial(_setting(3, 0.5), 2.5, 0.015),    # same speed-up, less loss: preferred
        _trial(_setting(5), 4.0, 0.0201),        # just over the threshold
        _trial(_setting(8), 9.0, 0.01, status="failed"),
    ]
    for t in trials:
        assert repo.save_trial(scope, t)
    assert not repo.save_trial(scope, trials[0]), "a stored key is never stored twice"

    (bound,) = repo.upper_bounds(0.02)
    assert bound.speedup == pytest.approx(2.5)
    assert bound.score_loss == pytest.approx(0.015)
    assert bound.settings == _setting(3, 0.5).as_dict()
    assert bound.baseline_time == pytest.approx(2.0) and bound.time == pytest.approx(0.8)
    assert bound.trials == 4  # done trials considered; the failed one is not
    assert bound.quality_meaningful

    (loose,) = repo.upper_bounds(0.05)
    assert loose.speedup == pytest.approx(4.0)
    (strict,) = repo.upper_bounds(0.001)
    assert (strict.speedup, strict.settings, strict.score_loss) == (1.0, {}, 0.0)
    assert baseline.clip_score == 30.0
    assert repo.status() == {"base_configs": 1, "baselines": 1, "trials": {"done": 4, "failed": 1}, "tasks": {}}


def test_bounds_are_per_base_config(db_url: str) -> None:
    repo = Repository(db_url)
    for steps, speedup in ((20, 1.5), (50, 3.0)):
        scope = _scope(repo, steps)
        repo.save_baseline(scope, time=1.0, time_spread=0.0, clip_score=30.0, image_digests=["d"], worker="t")
        repo.save_trial(scope, _trial(_setting(2), speedup, 0.01))
    bounds = repo.upper_bounds(0.02)
    assert [(b.base.steps, b.speedup) for b in bounds] == [(20, 1.5), (50, 3.0)]
    only_50 = repo.upper_bounds(0.02, [bounds[1].base.key])
    assert [b.base.steps for b in only_50] == [50]


def test_published_bound_is_the_confirmed_value(db_url: str) -> None:
    repo = Repository(db_url)
    scope = _scope(repo, 25)
    repo.save_baseline(scope, time=2.0, time_spread=0.0, clip_score=30.0, image_digests=["d"], worker="t")
    for t in (_trial(_setting(5), 3.0, 0.01), _trial(_setting(3), 2.5, 0.01), _trial(_setting(2), 1.5, 0.01)):
        repo.save_trial(scope, t)
    top, second, _ = repo.candidates(scope, 0.02)
    assert (top.speedup, second.speedup) == (3.0, 2.5)
    # the leader was lucky: re-measured, it is slower than the runner-up's first measurement
    repo.save_confirmation(top.trial_id, speedup=2.2, ci_half_width=0.02, repeats=12)
    (bound,) = repo.upper_bounds(0.02)
    assert (bound.speedup, bound.confirmed, bound.settings) == (2.5, False, _setting(3).as_dict())
    repo.save_confirmation(second.trial_id, speedup=2.4, ci_half_width=0.01, repeats=9)
    (bound,) = repo.upper_bounds(0.02)
    assert (bound.speedup, bound.first_speedup, bound.confirmed, bound.ci_half_width) == (2.4, 2.5, True, 0.01)
    assert [c.speedup for c in repo.candidates(scope, 0.02)] == [2.5, 3.0, 1.5]  # ranked by published value
