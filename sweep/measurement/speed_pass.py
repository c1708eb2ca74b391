"""The speed pass: a first estimate for every setting, precise paired timing only where it decides.

- The speed baseline: seconds per unaccelerated image in this environment, from the quality baseline's timed
  batches when they were generated here, else from the timing set (warm-up until stable, one pass).
- A first estimate: one paired pass over the timing set, each batch run by the baseline and by the setting back
  to back, so the baseline it is compared with was measured next to it (one slow pass of the baseline, minutes
  earlier, cannot bias every setting of a configuration).
- Precise timing: baseline and accelerated runs of the timing set interleaved (A B, B A, ...) until the
  speed-up's 95% CI is within its target, spent only on settings that can still be the upper bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sweep.accelerators import AppliedSetting
from sweep.measurement.measure import (
    Batch,
    Generator,
    PairedPass,
    PairedRun,
    TimedPass,
    paired_pass,
    paired_run,
    stable_pass,
)
from sweep.measurement.stats import TimingPolicy, log_spread, paired_estimate


@dataclass(frozen=True)
class FirstEstimate:
    speedup: float
    ci_half_width: float
    """From this estimate's own pairs (see :func:`sweep.measurement.stats.paired_estimate`)."""
    time: float
    baseline_time: float
    source: str
    pairs: int | None = None
    log_sd: float | None = None
    """Spread of its pairs' log speed-ups: what a row's pooled noise is made of (``storage.noise``)."""


PAIRED_SOURCE = "paired timing set"


def paired_first_estimate(run: PairedPass) -> FirstEstimate:
    speedup, half = paired_estimate(run.baseline_seconds, run.accelerated_seconds)
    return FirstEstimate(speedup, half, sum(run.accelerated_seconds) / len(run.accelerated_seconds),
                         sum(run.baseline_seconds) / len(run.baseline_seconds), PAIRED_SOURCE,
                         len(run.baseline_seconds), log_spread(run.baseline_seconds, run.accelerated_seconds))


def speed_baseline(gen: Generator, timing_set: Sequence[Batch], policy: TimingPolicy) -> TimedPass:
    return stable_pass(gen, timing_set, policy)


def _switches(gen: Generator, applied: AppliedSetting) -> tuple[Callable[[], None], Callable[[], None]]:
    """(accelerate, restore): switch the generator's pipeline to the setting and back (outside any timing)."""
    def accelerate() -> None:
        applied.apply()
        gen.call = applied.call

    def restore() -> None:
        applied.remove()
        gen.call = None

    return accelerate, restore


def timing_set_pass(gen: Generator, timing_set: Sequence[Batch], applied: AppliedSetting, *, warm: bool = False) -> PairedPass:
    """The setting's first estimate: one warm-up run (unless ``warm``), then the timing set paired with the
    baseline."""
    return paired_pass(gen, timing_set, *_switches(gen, applied), warm=warm)


def precise(
    gen: Generator, timing_set: Sequence[Batch], applied: AppliedSetting, policy: TimingPolicy, below: float | None = None,
) -> PairedRun:
    return paired_run(gen, timing_set, *_switches(gen, applied), policy, below)
