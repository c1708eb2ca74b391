"""What must hold for any input (hypothesis), and the CLIP score against numbers worked out by hand."""

from __future__ import annotations

import json
import math
import random
import tomllib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from search_space.setting import AccelSetting
from storage.bounds import candidates
from storage.measurements import QualityResult, SpeedResult
from sweep.accelerators import DeepCache, TGate, ToMe
from sweep.measurement.stats import Paired, paired_loss
from sweep.scoring.clip_score import clip_scores
from sweep.study.catalogue import parse_space

FAST = settings(max_examples=60, deadline=None)


# -- keys -------------------------------------------------------------------------------------------------------


@FAST
@given(interval=st.integers(1, 50), ratio=st.sampled_from([0.25, 0.5, 0.75]), as_float=st.booleans(),
       reverse=st.booleans())
def test_a_settings_key_does_not_depend_on_order_or_number_format(interval: int, ratio: float, as_float: bool,
                                                                  reverse: bool) -> None:
    deepcache = {"cache_interval": float(interval) if as_float else interval}
    tome = {"ratio": ratio, "max_downsample": 1.0 if as_float else 1}
    parts = [("deepcache", DeepCache.normalise(dict(reversed(list(deepcache.items()))) if reverse else deepcache)),
             ("tome", ToMe.normalise(tome))]
    if reverse:
        parts.reverse()
    setting = AccelSetting.of(dict(parts))
    canonical = AccelSetting.of({"tome": ToMe.normalise({"ratio": ratio}), "deepcache": DeepCache.normalise({"cache_interval": interval})})
    assert setting.key == canonical.key and AccelSetting.from_key(setting.key) == setting


SPACE = """
name = "p"
combine = {combine}
[protocol]
scorer_pretrained = "random"
[[base]]
pipelines = {pipelines}
schedulers = ["DDIMScheduler"]
steps = {steps}
resolutions = [[64, 64]]
[accelerators.deepcache]
cache_interval = {intervals}
[accelerators.tome]
ratio = {ratios}
[accelerators.tgate]
gate_step = {gates}
"""


@FAST
@given(
    intervals=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    ratios=st.lists(st.sampled_from([0.25, 0.5, 0.75, 0.5000]), min_size=1, max_size=3),
    gates=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    steps=st.lists(st.integers(2, 12), min_size=1, max_size=3),
    pipelines=st.lists(st.sampled_from(["tiny-sd-a", "tiny-sd-b"]), min_size=1, max_size=3),
    combine=st.booleans(), seed=st.integers(0, 1000),
)
def test_space_expansion_never_yields_a_key_twice_and_ignores_order(intervals: list[int], ratios: list[float],
                                                                    gates: list[int], steps: list[int],
                                                                    pipelines: list[str], combine: bool,
                                                                    seed: int) -> None:
    def expand(shuffle: random.Random | None) -> tuple[set[str], set[str], int]:
        lists = [list(intervals), list(ratios), list(gates), list(steps), list(pipelines)]
        if shuffle:
            for values in lists:
                shuffle.shuffle(values)
        text = SPACE.format(combine=str(combine).lower(), intervals=json.dumps(lists[0]), ratios=json.dumps(lists[1]),
                            gates=json.dumps(lists[2]), steps=json.dumps(lists[3]), pipelines=json.dumps(lists[4]))
        space = parse_space(tomllib.loads(text), "p")
        bases = [e.base.key for e in space.entries]
        settings_ = [(e.base.key, s.key) for e in space.entries for s in e.settings]
        assert len(bases) == len(set(bases)) and len(settings_) == len(set(settings_))
        return set(bases), {k for _, k in settings_}, len(settings_)

    assert expand(None) == expand(random.Random(seed))
    # methods that rewrite the same blocks are never combined
    _, keys, _ = expand(None)
    assert not any({"tgate", "tome"} <= set(AccelSetting.from_key(k).methods) for k in keys)


# -- statistics -----------------------------------------------------------------------------------------------------


ratios_ = st.lists(st.tuples(st.floats(0.1, 10.0), st.floats(0.1, 10.0)), min_size=1, max_size=40)


@FAST
@given(pairs=ratios_, seed=st.integers(0, 10_000))
def test_paired_statistics_do_not_depend_on_the_order_of_the_pairs(pairs: list[tuple[float, float]], seed: int) -> None:
    shuffled = list(pairs)
    random.Random(seed).shuffle(shuffled)
    a = Paired(tuple(b for b, _ in pairs), tuple(x for _, x in pairs))
    b = Paired(tuple(b for b, _ in shuffled), tuple(x for _, x in shuffled))
    assert a.speedup == b.speedup and a.interval == b.interval and a.half_width == b.half_width
    low, high = a.interval
    assert low <= a.speedup <= high


@FAST
@given(scores=st.lists(st.tuples(st.floats(1.0, 40.0), st.floats(0.0, 40.0)), min_size=2, max_size=30),
       seed=st.integers(0, 10_000))
def test_paired_loss_does_not_depend_on_the_order_of_the_prompts(scores: list[tuple[float, float]], seed: int) -> None:
    shuffled = list(scores)
    random.Random(seed).shuffle(shuffled)
    a = paired_loss([b for b, _ in scores], [x for _, x in scores])
    b = paired_loss([b for b, _ in shuffled], [x for _, x in shuffled])
    assert a is not None and b is not None
    assert math.isclose(a.loss, b.loss, rel_tol=1e-9, abs_tol=1e-12)
    assert a.low is not None and a.high is not None and a.low <= a.loss <= a.high


# -- the upper bound ------------------------------------------------------------------------------------------------


records = st.lists(
    st.tuples(st.floats(0.5, 20.0), st.floats(-0.05, 0.2), st.sampled_from(["done", "failed", "rejected"]),
              st.booleans(), st.floats(0.0, 0.2)),
    min_size=0, max_size=25,
)


@FAST
@given(rows=records, max_loss=st.floats(0.0, 0.1))
def test_the_bound_never_exceeds_the_largest_feasible_speedup(rows: list[tuple[float, float, str, bool, float]],
                                                               max_loss: float) -> None:
    speeds, quality = {}, {}
    for i, (speedup, loss, status, precise, half) in enumerate(rows):
        key = f"s{i}"
        speeds[key] = SpeedResult(key, "done" if status != "failed" else "failed", None, "random", speedup, half,
                                  "timing set", 1.0 / speedup, 1.0, speedup * 0.97 if precise else None,
                                  0.01 if precise else None)
        quality[key] = QualityResult(key, status, None, loss, None, None, 4)
    ranked = candidates(speeds, quality, max_loss)
    feasible = [s.published for k, s in speeds.items() if s.status == "done" and quality[k].status == "done"
                and quality[k].score_loss <= max_loss]
    if not feasible:
        assert ranked == []
        return
    assert ranked[0].published == max(feasible)  # the fastest feasible setting, never more
    assert all(quality[s.setting_key].status == "done" and quality[s.setting_key].score_loss <= max_loss for s in ranked)


# -- the CLIP score ---------------------------------------------------------------------------------------------------


def test_clip_score_against_numbers_worked_out_by_hand() -> None:
    image = torch.tensor([[1.0, 0.0], [3.0, 4.0], [1.0, 0.0], [2.0, 0.0]])
    text = torch.tensor([[1.0, 1.0], [3.0, 4.0], [-1.0, 0.0], [0.0, 5.0]])
    # cos = 1/sqrt(2); 1 (same direction, any length); -1 → clamped to 0; 0 (orthogonal)
    assert clip_scores(image, text) == pytest.approx([100 / math.sqrt(2), 100.0, 0.0, 0.0])
    # and the score loss of two images against the baseline's, by hand: (mean 50 − mean 40) / mean 50 = 20%
    est = paired_loss([60.0, 40.0], [45.0, 35.0])
    assert est is not None and est.loss == pytest.approx(0.2)


def test_tgate_gate_step_is_more_aggressive_downward() -> None:
    """The frontier search relies on each parameter's declared direction."""
    assert TGate.param("gate_step").aggressive == -1 and TGate.param("sp_interval").aggressive == +1
