"""Statistics of timing: warm-up detection, paired A/B interleaving, and a confidence bound on the speed-up.

Pure functions over callables that return seconds, so the logic is tested on synthetic timing streams.
GPUs drift by tens of percent between repeats, so a speed-up is the median of ratios of baseline (A) and
accelerated (B) runs made back to back, repeated until its 95% confidence interval is narrow enough.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class TimingPolicy:
    warmup_tolerance: float = 0.05
    """Warm-up ends when two successive runs differ by at most this fraction..."""
    warmup_cap: int = 8
    """... or after this many runs."""
    min_pairs: int = 6
    """Fewest A/B pairs; at least one pass over every prompt batch is made regardless."""
    max_pairs: int = 40
    target_half_width: float = 0.03
    """Repeat until the 95% CI half-width of the speed-up is at most this fraction of it."""


@dataclass(frozen=True)
class Warmup:
    seconds: tuple[float, ...]
    stable: bool


def warm_up(run: Callable[[], float], tolerance: float, cap: int) -> Warmup:
    """Run until two successive runs agree within ``tolerance`` (relative), or ``cap`` runs."""
    seconds: list[float] = []
    while len(seconds) < cap:
        seconds.append(run())
        if len(seconds) >= 2 and abs(seconds[-1] - seconds[-2]) <= tolerance * min(seconds[-1], seconds[-2]):
            return Warmup(tuple(seconds), True)
    return Warmup(tuple(seconds), False)


def _binomial_cdf(k: int, n: int) -> float:
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median from order statistics.

    The widest-possible interval (min, max) when there are too few values for the confidence asked.
    """
    ordered = sorted(values)
    n = len(ordered)
    alpha = 1 - confidence
    # largest k with P(Binomial(n, 1/2) ≤ k - 1) ≤ alpha / 2: then [x_(k), x_(n-k+1)] covers the median
    k = 0
    while k + 1 <= n // 2 and _binomial_cdf(k, n) <= alpha / 2:
        k += 1
    if k == 0:
        return ordered[0], ordered[-1]
    return ordered[k - 1], ordered[n - k]


@dataclass(frozen=True)
class Paired:
    """A paired measurement: per pair, baseline seconds, accelerated seconds and their ratio."""

    baseline_seconds: tuple[float, ...]
    accelerated_seconds: tuple[float, ...]

    @property
    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.baseline_seconds, self.accelerated_seconds, strict=True)]

    @property
    def speedup(self) -> float:
        return statistics.median(self.ratios)

    @property
    def interval(self) -> tuple[float, float]:
        return median_interval(self.ratios)

    @property
    def half_width(self) -> float:
        """Half the 95% CI of the speed-up, relative to the speed-up."""
        low, high = self.interval
        return (high - low) / 2 / self.speedup

    @property
    def pairs(self) -> int:
        return len(self.ratios)


def measure_paired(
    run_baseline: Callable[[int], float], run_accelerated: Callable[[int], float], batches: int, policy: TimingPolicy
) -> Paired:
    """Interleave baseline and accelerated runs of the same batch until the CI is narrow.

    Pairs alternate their order (A B, B A, A B, ...), so a steady drift of the clock cancels in the median
    of the ratios. Pair i uses batch ``i % batches``, so the first ``batches`` pairs cover every prompt.
    """
    base: list[float] = []
    accel: list[float] = []
    minimum = max(policy.min_pairs, batches)
    while len(base) < max(policy.max_pairs, minimum):
        batch = len(base) % batches
        if len(base) % 2 == 0:
            base.append(run_baseline(batch))
            accel.append(run_accelerated(batch))
        else:
            accel.append(run_accelerated(batch))
            base.append(run_baseline(batch))
        if len(base) >= minimum and Paired(tuple(base), tuple(accel)).half_width <= policy.target_half_width:
            break
    return Paired(tuple(base), tuple(accel))
