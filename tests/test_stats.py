"""Timing statistics on synthetic timing streams (never this machine's clock)."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from search_space import defaults
from sweep.measurement.measure import max_pixel_difference
from sweep.measurement.stats import (
    Paired,
    TimingPolicy,
    Warmup,
    measure_group,
    measure_paired,
    ratio_of_means_interval,
    warm_up,
)


def stream(values: list[float]):  # type: ignore[no-untyped-def]
    it = iter(values)
    return lambda *_: next(it)


def test_warm_up_stops_when_two_runs_agree() -> None:
    result = warm_up(stream([3.0, 2.0, 1.52, 1.50, 1.49]), tolerance=0.05, cap=8)
    assert result.seconds == (3.0, 2.0, 1.52, 1.50) and result.stable


def test_warm_up_is_capped() -> None:
    result = warm_up(stream([1.0 * 0.8**i for i in range(20)]), tolerance=0.05, cap=5)
    assert len(result.seconds) == 5 and not result.stable


def test_the_speed_up_is_the_ratio_of_mean_times_not_the_median_ratio() -> None:
    # a method fast on three calls of four and slow on the fourth (T-GATE on PixArt at batch 1, an H200)
    baseline = [1.10] * 12
    accelerated = [0.70, 0.70, 0.70, 1.20] * 3
    paired = Paired(tuple(baseline), tuple(accelerated))
    assert paired.speedup == pytest.approx(1.10 / statistics.fmean(accelerated))  # 1.333x, as the user waits
    assert statistics.median(paired.ratios) == pytest.approx(1.10 / 0.70)  # 1.571x: the fast mode only
    low, high = paired.interval
    assert low < paired.speedup < high and paired.speedup < 1.10 / 0.70 - 0.2


def test_the_ratio_interval_covers_the_true_ratio_95_times_in_100() -> None:
    rng = random.Random(11)
    covered = 0
    for _ in range(2000):
        drift = [rng.gauss(1.0, 0.05) for _ in range(10)]  # shared by both runs of a pair
        base = [2.0 * d * rng.gauss(1.0, 0.03) for d in drift]
        accel = [1.0 * d * rng.gauss(1.0, 0.08) for d in drift]
        low, high = ratio_of_means_interval(base, accel)
        covered += low <= 2.0 <= high
    assert 0.92 <= covered / 2000 <= 0.975


def test_the_ratio_interval_uses_the_pairs_covariance_and_needs_two_pairs() -> None:
    together = ratio_of_means_interval([2.0, 2.2, 1.8, 2.1], [1.0, 1.1, 0.9, 1.05])  # each pair drifts as one
    apart = ratio_of_means_interval([2.0, 2.2, 1.8, 2.1], [1.1, 0.9, 1.05, 1.0])  # same values, unpaired
    assert together == pytest.approx((2.0, 2.0)) and apart[1] - apart[0] > 0.2
    assert ratio_of_means_interval([3.0], [1.0]) == (3.0, 3.0)


def test_pairs_interleave_baseline_and_accelerated_over_every_batch() -> None:
    calls: list[str] = []

    def a(batch: int) -> float:
        calls.append(f"A{batch}")
        return 2.0

    def b(batch: int) -> float:
        calls.append(f"B{batch}")
        return 1.0

    paired = measure_paired(a, b, batches=3, policy=TimingPolicy(min_pairs=2, max_pairs=10))
    assert calls == ["A0", "B0", "B1", "A1", "A2", "B2"]  # alternating order, one pass over the prompts
    assert paired.speedup == 2.0 and paired.half_width == 0.0


def test_pairing_cancels_clock_drift() -> None:
    # The GPU slows down 1% per run (thermal drift); the accelerated setting is truly 2x faster.
    clock = {"t": 0}

    def drifting(seconds: float):  # type: ignore[no-untyped-def]
        def run(_batch: int) -> float:
            clock["t"] += 1
            return seconds * 1.01 ** clock["t"]
        return run

    paired = measure_paired(drifting(2.0), drifting(1.0), batches=1, policy=TimingPolicy(min_pairs=20, max_pairs=20))
    # AB and BA pairs err by -1% and +1%: the ratio of their means is 2.0 to 1e-4
    assert paired.speedup == pytest.approx(2.0, rel=1e-4)
    clock["t"] = 0
    naive_a = [drifting(2.0)(0) for _ in range(20)]  # all baseline runs first, then all accelerated ones
    naive_b = [drifting(1.0)(0) for _ in range(20)]
    naive = statistics.median(naive_a) / statistics.median(naive_b)
    assert abs(naive - 2.0) > 10 * abs(paired.speedup - 2.0)


def test_repeats_until_the_interval_is_narrow_or_capped() -> None:
    rng = random.Random(7)
    noisy = lambda _b: 2.0 * (1 + rng.gauss(0, 0.10))  # noqa: E731
    steady = lambda _b: 1.0  # noqa: E731
    policy = TimingPolicy(min_pairs=6, max_pairs=200, target_half_width=0.03)
    paired = measure_paired(noisy, steady, batches=1, policy=policy)
    assert 6 < paired.pairs < 200
    assert paired.half_width <= 0.03
    assert not Paired(paired.baseline_seconds[:-1], paired.accelerated_seconds[:-1]).half_width <= 0.03 or paired.pairs == 6
    capped = measure_paired(lambda _b: 2.0 * (1 + rng.gauss(0, 0.5)), steady, 1, TimingPolicy(min_pairs=6, max_pairs=12))
    assert capped.pairs == 12 and capped.half_width > 0.03


def test_a_group_shares_one_baseline_run_per_round_and_alternates_its_order() -> None:
    calls: list[str] = []

    def run(batch: int, member: int | None) -> float:
        calls.append(f"{'B' if member is None else f'S{member}'}{batch}")
        return 1.0 if member is None else 0.5

    timed, rounds = measure_group(run, 3, batches=2, policy=TimingPolicy(min_pairs=4, max_pairs=10))
    # round 0: the baseline, then the settings; round 1 reversed, so each setting sits as far from its round's
    # baseline run before it as after it; every two rounds the settings' order rotates, each taking every place
    assert calls == ["B0", "S00", "S10", "S20", "S21", "S11", "S01", "B1",
                     "B0", "S10", "S20", "S00", "S01", "S21", "S11", "B1"]
    assert [(p.pairs, p.speedup, stop) for p, stop in timed] == [(4, 2.0, "target width")] * 3 and rounds == 4


def test_a_group_costs_the_baseline_runs_of_its_longest_timing_not_of_all_of_them() -> None:
    """Three settings, a noisy host: timed one after another each runs the baseline as often as itself; together,
    the baseline runs once per round. Each setting's pairs and stop are its own."""
    policy = TimingPolicy(min_pairs=6, max_pairs=30, target_half_width=0.03)
    speeds = [4.0, 3.6, 2.0]

    def host(seed: int):  # type: ignore[no-untyped-def]
        rng = random.Random(seed)
        return lambda batch, member: (1.0 if member is None else 1.0 / speeds[member]) * (1 + rng.gauss(0, 0.08))

    baseline_runs = {"together": 0, "apart": 0}
    counting = host(5)

    def together(batch: int, member: int | None) -> float:
        baseline_runs["together"] += member is None
        return counting(batch, member)

    timed, rounds = measure_group(together, 3, 1, policy)
    assert baseline_runs["together"] == rounds == max(p.pairs for p, _ in timed)
    stops = [stop for _, stop in timed]
    assert stops[2] == "below leader" and timed[2][0].pairs == 6  # 2x under a 4x: settled at the minimum
    assert stops[0] in ("target width", "max pairs")
    for (p, _), speed in zip(timed, speeds, strict=True):
        low, high = p.interval
        assert low < speed < high or p.half_width > 0.03, (p.speedup, speed)

    apart = host(5)
    bar = None
    for j in range(3):  # the sequential protocol: fastest first, each against the best interval so far
        one = measure_paired(lambda b, j=j: (baseline_runs.__setitem__("apart", baseline_runs["apart"] + 1),
                                            apart(b, None))[1], lambda b, j=j: apart(b, j), 1, policy, bar)
        bar = max(bar or 0.0, one.interval[0])
    assert baseline_runs["together"] < 0.7 * baseline_runs["apart"]


def test_a_setting_settled_under_a_member_whose_interval_then_drops_is_timed_on() -> None:
    """The leader's first pairs say 4x, its later ones 2x: a 2.5x setting settled under its early interval lies
    inside its final one, so it is timed on (here to the cap), never stored as below the leader; it rejoins on a
    round of the other direction, so its rounds stay balanced between the two orders."""
    wiggle = [1.01, 0.99]
    calls: list[tuple[int | None, int]] = []

    def run(batch: int, member: int | None) -> float:
        calls.append((member, batch))
        if member is None:
            return 1.0
        if member == 0:
            return (0.25 if sum(m == 0 for m, _ in calls) <= 3 else 0.5) * wiggle[len(calls) % 2]
        return 0.4 * wiggle[len(calls) % 2]

    policy = TimingPolicy(min_pairs=3, max_pairs=12, target_half_width=0.001)
    ((leader, leader_stop), (second, second_stop)), rounds = measure_group(run, 2, 2, policy)
    assert leader_stop == "max pairs" and leader.pairs == 12
    assert leader.interval[0] < second.interval[1]  # the final intervals overlap
    assert second_stop == "max pairs" and second.pairs == 12 and rounds > 12  # it sat out rounds: fewer pairs
    forward = sum(1 for m, b in calls if m == 1 and b == 0)  # batch 0: the rounds with the baseline first
    assert abs(forward - (second.pairs - forward)) <= 1
    calls.clear()  # the same runs, stopped after the leader's first three pairs: there the setting lay under it
    ((_, _), (_, early_stop)), _ = measure_group(run, 2, 2, TimingPolicy(min_pairs=3, max_pairs=3, target_half_width=0.001))
    assert early_stop == "below leader"


def test_a_setting_that_stops_does_not_reshuffle_the_others() -> None:
    """The order rotates over the fixed list of settings: when one stops, the others keep their places."""
    calls: list[int | None] = []

    def run(batch: int, member: int | None) -> float:
        calls.append(member)
        if member is None:
            return 1.0
        return 0.5 if member == 0 else 0.5 * (1.0 if len(calls) % 2 else 1.2)  # 0 is exact: it stops first

    timed, _ = measure_group(run, 4, 1, TimingPolicy(min_pairs=2, max_pairs=4, target_half_width=0.01), settle=False)
    assert [p.pairs for p, _ in timed] == [2, 4, 4, 4]
    rounds = [calls[0:5], calls[5:10], calls[10:14], calls[14:18]]
    # rounds 2 and 3 rotate by one over [0, 1, 2, 3]: [1, 2, 3, 0] without the stopped 0 (a rotation of the three
    # left would read [2, 3, 1])
    assert rounds == [[None, 0, 1, 2, 3], [3, 2, 1, 0, None], [None, 1, 2, 3], [3, 2, 1, None]]


def test_max_pixel_difference_between_two_runs() -> None:
    from PIL import Image

    a = Image.new("RGB", (4, 4), (10, 20, 30))
    b = a.copy()
    assert max_pixel_difference([a, a], [b, b]) == 0
    b.putpixel((3, 1), (10, 27, 0))
    assert max_pixel_difference([a, a], [a, b]) == 30


def test_a_paired_first_estimate_is_a_ratio_of_means_with_a_t_interval_over_log_ratios() -> None:
    from sweep.measurement.stats import paired_estimate

    speedup, half = paired_estimate([2.0, 2.0, 2.0], [1.0, 1.0, 1.0], margin=0.02)
    assert speedup == 2.0 and half == pytest.approx(0.02)  # no spread: the margin alone
    # log ratios log 2 and log 4: stdev 0.4901 / sqrt 2 = 0.3466, times t(0.975, 1) = 12.706 → expm1(4.404)
    speedup, half = paired_estimate([2.0, 4.0], [1.0, 1.0], margin=0.0)
    assert speedup == 3.0 and half == pytest.approx(math.expm1(12.7062 * math.log(2) / 2), rel=1e-4)
    _, one = paired_estimate([2.0], [1.0])
    assert one == pytest.approx(defaults.FIRST_ESTIMATE_MARGIN)  # one pair shows no spread: the unpaired margin


def test_a_paired_first_estimate_does_not_move_with_a_drift_both_sides_share() -> None:
    """A slow stretch of the machine that slows both runs of a pair leaves the estimate where it was."""
    from sweep.measurement.stats import paired_estimate

    steady = paired_estimate([1.0, 1.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5])
    drifting = paired_estimate([1.0, 1.5, 1.0, 1.5], [0.5, 0.75, 0.5, 0.75])
    assert steady[0] == pytest.approx(2.0) and drifting[0] == pytest.approx(2.0)
    assert drifting[1] == pytest.approx(steady[1])


def test_paired_loss_against_numbers_worked_by_hand() -> None:
    from sweep.measurement.stats import paired_loss

    baseline = [30.0, 32.0, 28.0, 30.0]
    accelerated = [29.0, 31.0, 27.5, 29.5]  # differences 1, 1, 0.5, 0.5
    est = paired_loss(baseline, accelerated)
    assert est is not None and est.n == 4
    assert est.loss == pytest.approx(0.75 / 30.0)  # mean difference / mean baseline
    se = statistics.stdev([1, 1, 0.5, 0.5]) / 2 / 30.0
    assert est.standard_error == pytest.approx(se)
    assert est.high - est.loss == pytest.approx(3.182446 * se, rel=1e-5)  # t(0.975, 3)
    # only the prompts used so far enter the baseline's mean
    assert paired_loss(baseline, accelerated[:2]).loss == pytest.approx(1.0 / 31.0)  # type: ignore[union-attr]
    assert paired_loss([0.0, 0.0], [1.0, 2.0]) is None  # the loss is undefined on a zero baseline


def test_rejection_needs_the_whole_interval_above_the_threshold() -> None:
    from sweep.measurement.stats import paired_loss, reject

    clearly_worse = paired_loss([30.0] * 6, [25.0, 25.1, 24.9, 25.0, 25.2, 24.8])
    assert clearly_worse is not None and reject(clearly_worse, max_loss=0.02, looks=12)
    noisy = paired_loss([30.0] * 6, [25.0, 35.0, 20.0, 33.0, 27.0, 31.0])  # mean loss 1%, huge spread
    assert noisy is not None and not reject(noisy, max_loss=0.0, looks=12)
    two = paired_loss([30.0, 30.0], [20.0, 20.1])
    assert two is not None and not reject(two, max_loss=0.02, looks=2)  # fewer than 3 prompts: never


def test_rejection_rarely_stops_a_setting_within_the_threshold() -> None:
    """A setting exactly at the threshold, noisy scores, 12 looks: stopped in at most 5% of runs."""
    from sweep.measurement.stats import paired_loss, reject

    rng = random.Random(7)
    rejected = 0
    runs = 400
    for _ in range(runs):
        baseline = [rng.gauss(30, 3) for _ in range(24)]
        accelerated = [b * (1 - 0.02) + rng.gauss(0, 1.0) for b in baseline]
        for n in range(2, 24, 2):
            est = paired_loss(baseline, accelerated[:n])
            if est is not None and reject(est, 0.02, looks=12):
                rejected += 1
                break
    assert rejected / runs <= 0.05


# -- boundaries: each pins one comparison or index of sweep/measurement/stats.py (found by the mutation run) --------------


def test_warm_up_boundaries() -> None:
    # two equal runs agree at tolerance 0; a third is never asked for
    assert warm_up(stream([1.0, 1.0, 5.0]), tolerance=0.0, cap=8) == Warmup((1.0, 1.0), True)
    # |2.5 - 2.0| = 0.5 is exactly 0.25 * min(2.0, 2.5): agreement includes the boundary
    assert warm_up(stream([2.0, 2.5, 9.0]), tolerance=0.25, cap=8) == Warmup((2.0, 2.5), True)
    # the last two runs are compared, not the first ones: 4.0/1.0 and 1.0/2.0 disagree, 2.0/2.5 agree
    assert warm_up(stream([4.0, 1.0, 2.0, 2.5]), tolerance=0.25, cap=4) == Warmup((4.0, 1.0, 2.0, 2.5), True)
    # 2.5 vs 2.0 at tolerance 0.22: 0.5 > 0.44 (the smaller run) but not > 0.55 (the larger): still unstable
    result = warm_up(stream([4.0, 2.5, 2.0]), tolerance=0.22, cap=3)
    assert result.seconds == (4.0, 2.5, 2.0) and result.stable is False


def test_paired_timing_stops_at_the_minimum_when_already_narrow() -> None:
    steady = lambda _b: 1.0  # noqa: E731
    paired = measure_paired(steady, steady, batches=1, policy=TimingPolicy(min_pairs=6, max_pairs=20, target_half_width=0.0))
    assert paired.pairs == 6  # half-width 0 <= target 0: the boundary counts as narrow enough


def test_paired_timing_stops_early_only_when_the_whole_interval_is_below() -> None:
    toggle = {"i": 0}

    def accelerated(_b: int) -> float:
        toggle["i"] += 1
        return 0.5 if toggle["i"] % 2 else 1.0  # ratios alternate 2.0 and 1.0: 1.33x, (1.14, 1.56) at 20 pairs

    policy = TimingPolicy(min_pairs=6, max_pairs=20, target_half_width=0.01)
    touching = measure_paired(lambda _b: 1.0, accelerated, 1, policy, below=1.5)
    assert touching.pairs == 20 and touching.interval[1] > 1.5  # its upper end never falls below 1.5
    toggle["i"] = 0
    under = measure_paired(lambda _b: 1.0, accelerated, 1, policy, below=2.5)
    assert under.pairs == 6
    # each stop is said for what it is: only a timing at the protocol's width is a precise speed-up
    from sweep.measurement.stats import stop_reason

    assert stop_reason(touching, policy, below=1.5) == "max pairs"
    assert stop_reason(under, policy, below=2.5) == "below leader"
    steady = measure_paired(lambda _b: 1.0, lambda _b: 0.5, 1, policy, below=2.5)
    assert steady.pairs == 6 and stop_reason(steady, policy, below=2.5) == "target width"


def test_paired_loss_of_one_prompt_and_of_too_short_a_baseline() -> None:
    from sweep.measurement.stats import LossEstimate, paired_loss

    one = paired_loss([30.0, 30.0], [29.7])
    assert one == LossEstimate(pytest.approx(0.01), None, None, 1, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        paired_loss([30.0], [29.0, 28.0])  # more accelerated scores than baseline ones
    wide = paired_loss([30.0, 30.0, 30.0, 30.0], [29.0, 28.0, 29.0, 28.0], confidence=0.99)
    se = statistics.stdev([1, 2, 1, 2]) / 2 / 30.0
    assert wide is not None and wide.high - wide.loss == pytest.approx(5.840909 * se, rel=1e-5)  # t(0.995, 3)
    assert wide.loss - wide.low == pytest.approx(5.840909 * se, rel=1e-5)


def test_rejection_thresholds_worked_by_hand() -> None:
    from sweep.measurement.stats import LossEstimate, reject

    estimate = LossEstimate(0.06, None, None, 4, 0.01)
    # one look: lower bound 0.06 - t(0.95, 3) * 0.01 = 0.03647
    assert reject(estimate, max_loss=0.034, looks=1)
    assert not reject(estimate, max_loss=0.038, looks=1)
    assert reject(estimate, max_loss=0.034, looks=0)  # no look counted yet: as one
    # two looks spend half the error each: 0.06 - t(0.975, 3) * 0.01 = 0.02818
    assert not reject(estimate, max_loss=0.030, looks=2)
    assert reject(estimate, max_loss=0.027, looks=2)
    assert not reject(estimate, max_loss=0.034, looks=1, confidence=0.99)  # 0.06 - 4.541 * 0.01 = 0.0146
    assert reject(LossEstimate(0.9, None, None, 3, 0.01), max_loss=0.02, looks=1)  # three prompts suffice
    assert not reject(LossEstimate(0.9, None, None, 2, 0.01), max_loss=0.02, looks=1)
    assert not reject(LossEstimate(0.05, None, None, 5, 0.0), max_loss=0.05, looks=1)  # equal is not above
    assert not reject(LossEstimate(0.9, None, None, 5, None), max_loss=0.02, looks=1)


def test_paired_loss_refuses_more_accelerated_scores_than_baseline_ones() -> None:
    from sweep.measurement.stats import paired_loss

    with pytest.raises(ValueError):
        paired_loss([30.0, 30.0], [29.0, 28.0, 27.0])
