"""The speed pass: a first estimate for every setting, precise paired timing only where it decides.

- The speed baseline: seconds per unaccelerated image in this environment, from the quality baseline's timed
  batches when they were generated here, else from the timing set (warm-up until stable, one pass).
- A first estimate: the setting's own timed batches (its quality pass, or one pass over the timing set) against
  the baseline's, runs not interleaved, so its interval includes a margin for drift.
- Precise timing: baseline and accelerated runs of the timing set interleaved (A B, B A, ...) until the
  speed-up's 95% CI is within its target, spent only on settings that can still be the upper bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sweep.accelerators import AppliedSetting
from sweep.measurement.measure import (
    Batch,
    Generator,
    PairedRun,
    TimedPass,
    paired_run,
    quick_pass,
    stable_pass,
)
from sweep.measurement.stats import TimingPolicy, ratio_estimate


@dataclass(frozen=True)
class FirstEstimate:
    speedup: float
    ci_half_width: float
    time: float
    baseline_time: float
    source: str


def first_estimate(baseline_seconds: Sequence[float], accelerated_seconds: Sequence[float], source: str) -> FirstEstimate:
    speedup, half = ratio_estimate(baseline_seconds, accelerated_seconds)
    return FirstEstimate(speedup, half, sum(accelerated_seconds) / len(accelerated_seconds),
                         sum(baseline_seconds) / len(baseline_seconds), source)


def speed_baseline(gen: Generator, timing_set: Sequence[Batch], policy: TimingPolicy) -> TimedPass:
    return stable_pass(gen, timing_set, policy)


def timing_set_pass(gen: Generator, timing_set: Sequence[Batch], applied: AppliedSetting) -> TimedPass:
    """The setting's first estimate where no quality pass ran here: one warm-up run, one timed pass."""
    try:
        applied.apply()
        gen.call = applied.call
        return quick_pass(gen, timing_set)
    finally:
        applied.remove()
        gen.call = None


def precise(
    gen: Generator, timing_set: Sequence[Batch], applied: AppliedSetting, policy: TimingPolicy, below: float | None = None,
) -> PairedRun:
    def accelerate() -> None:
        applied.apply()
        gen.call = applied.call

    def restore() -> None:
        applied.remove()
        gen.call = None

    return paired_run(gen, timing_set, accelerate, restore, policy, below)
