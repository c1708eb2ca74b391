"""Timing statistics on synthetic timing streams (never this machine's clock)."""

from __future__ import annotations

import random
import statistics

import pytest

from sweep.measure import max_pixel_difference
from sweep.stats import Paired, TimingPolicy, measure_paired, median_interval, warm_up


def stream(values: list[float]):  # type: ignore[no-untyped-def]
    it = iter(values)
    return lambda *_: next(it)


def test_warm_up_stops_when_two_runs_agree() -> None:
    result = warm_up(stream([3.0, 2.0, 1.52, 1.50, 1.49]), tolerance=0.05, cap=8)
    assert result.seconds == (3.0, 2.0, 1.52, 1.50) and result.stable


def test_warm_up_is_capped() -> None:
    result = warm_up(stream([1.0 * 0.8**i for i in range(20)]), tolerance=0.05, cap=5)
    assert len(result.seconds) == 5 and not result.stable


def test_median_interval_uses_order_statistics() -> None:
    assert median_interval([float(i) for i in range(1, 11)]) == (2.0, 9.0)
    assert median_interval([float(i) for i in range(1, 21)]) == (6.0, 15.0)
    assert median_interval([5.0, 1.0, 3.0]) == (1.0, 5.0)  # too few values: the whole range


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
    # AB and BA pairs err by -1% and +1%: their median is 2.0 to 1e-4
    assert paired.speedup == pytest.approx(2.0, rel=1e-4)
    clock["t"] = 0
    naive_a = [drifting(2.0)(0) for _ in range(20)]  # all baseline runs first, then all accelerated ones
    naive_b = [drifting(1.0)(0) for _ in range(20)]
    naive = statistics.median(naive_a) / statistics.median(naive_b)
    assert abs(naive - 2.0) > 10 * abs(paired.speedup - 2.0)


def test_repeats_until_the_interval_is_narrow_or_capped() -> None:
    rng = random.Random(7)
    noisy = lambda _b: 2.0 * (1 + rng.gauss(0, 0.05))  # noqa: E731
    steady = lambda _b: 1.0  # noqa: E731
    policy = TimingPolicy(min_pairs=6, max_pairs=200, target_half_width=0.03)
    paired = measure_paired(noisy, steady, batches=1, policy=policy)
    assert 6 < paired.pairs < 200
    assert paired.half_width <= 0.03
    assert not Paired(paired.baseline_seconds[:-1], paired.accelerated_seconds[:-1]).half_width <= 0.03 or paired.pairs == 6
    capped = measure_paired(lambda _b: 2.0 * (1 + rng.gauss(0, 0.5)), steady, 1, TimingPolicy(min_pairs=6, max_pairs=12))
    assert capped.pairs == 12 and capped.half_width > 0.03


def test_max_pixel_difference_between_two_runs() -> None:
    from PIL import Image

    a = Image.new("RGB", (4, 4), (10, 20, 30))
    b = a.copy()
    assert max_pixel_difference([a, a], [b, b]) == 0
    b.putpixel((3, 1), (10, 27, 0))
    assert max_pixel_difference([a, a], [a, b]) == 30
