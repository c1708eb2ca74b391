"""The speed pass: a first estimate for every setting, precise paired timing only where it decides.

- The speed baseline: seconds per unaccelerated image in this environment, from the quality baseline's timed
  batches when they were generated here, else from the timing set (warm-up until stable, one pass).
- A first estimate: one paired pass over the timing set, each batch run by the baseline and by the setting back
  to back, so the baseline it is compared with was measured next to it (one slow pass of the baseline, minutes
  earlier, cannot bias every setting of a configuration). Where the speed baseline is the timing set's own pass,
  timed in this process, and the set has several batches, a *checked* pass costs fewer images: the setting over
  every batch, then the baseline over one (the check) right after; within ``DRIFT_TOLERANCE`` of the speed
  baseline, that baseline is compared with (the tolerance added to the interval), else the row is drifting and
  this setting and the rest of its row get paired passes.
- Precise timing: baseline and accelerated runs of the timing set interleaved (A B, B A, ...) until the
  speed-up's 95% CI is within its target, spent only on settings that can still be the upper bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from search_space import defaults
from storage import measurements
from sweep.accelerators import AppliedSetting
from sweep.measurement.measure import (
    Batch,
    CheckedPass,
    Generator,
    PairedPass,
    PairedRun,
    TimedPass,
    checked_pass,
    group_run,
    paired_pass,
    stable_pass,
    switches,
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
    """Spread of its pairs' log speed-ups: what a row's pooled noise is made of (:func:`storage.measurements.row_noise`)."""


PAIRED_SOURCE = "paired timing set"
CHECKED_SOURCE = measurements.CHECKED_SOURCE
"""The setting's pass against the speed baseline's, one adjacent baseline run having checked it (``checked_pass``)."""
MEASURED_SOURCES = (PAIRED_SOURCE, CHECKED_SOURCE)
"""First estimates measured in their own row (what a row of another scheduler may share)."""


def _estimate(baseline: Sequence[float], accelerated: Sequence[float], source: str, margin: float = 0.0) -> FirstEstimate:
    """Per-batch baseline and accelerated seconds → the first estimate, its interval widened by ``margin``."""
    speedup, half = paired_estimate(baseline, accelerated)
    return FirstEstimate(speedup, half + margin, sum(accelerated) / len(accelerated), sum(baseline) / len(baseline),
                         source, len(baseline), log_spread(baseline, accelerated))


def paired_first_estimate(run: PairedPass) -> FirstEstimate:
    return _estimate(run.baseline_seconds, run.accelerated_seconds, PAIRED_SOURCE)


def checked_first_estimate(run: CheckedPass) -> FirstEstimate:
    """The speed baseline's batches against the setting's: the per-batch log ratios hold both passes' run-to-run
    noise (the runs are independent), so Student's t over them bounds the ratio of the two means; what they cannot
    see is a drift between the passes, which the check bounds by ``DRIFT_TOLERANCE``: added to the interval
    whole (one check run measures the drift only to its own noise, so it is a gate, never a correction)."""
    assert run.baseline_seconds is not None, "a drifted check has no estimate: measure a paired pass"
    return _estimate(run.baseline_seconds, run.accelerated_seconds, CHECKED_SOURCE, defaults.DRIFT_TOLERANCE)


def speed_baseline(gen: Generator, timing_set: Sequence[Batch], policy: TimingPolicy) -> TimedPass:
    return stable_pass(gen, timing_set, policy)


def timing_set_pass(gen: Generator, timing_set: Sequence[Batch], applied: AppliedSetting, *, warm: bool = False) -> PairedPass:
    """The setting's first estimate: one warm-up run (unless ``warm``), then the timing set paired with the
    baseline."""
    return paired_pass(gen, timing_set, *switches(gen, applied), warm=warm)


def checked_timing_set_pass(gen: Generator, timing_set: Sequence[Batch], applied: AppliedSetting,
                            reference: Sequence[float], check: int, *, warm: bool = False) -> CheckedPass:
    """The setting's pass against the speed baseline's own batches, checked by one adjacent baseline run (see
    :func:`checked_pass`; a check past ``DRIFT_TOLERANCE`` returns no baseline)."""
    return checked_pass(gen, timing_set, *switches(gen, applied), reference, check, defaults.DRIFT_TOLERANCE, warm=warm)


def precise_group(
    gen: Generator, timing_set: Sequence[Batch], applied: Sequence[AppliedSetting], policy: TimingPolicy,
    below: float | None = None, *, settle: bool = True,
) -> list[PairedRun]:
    """Several settings timed precisely together, one baseline run per round serving all (see :func:`group_run`)."""
    return group_run(gen, timing_set, [switches(gen, a) for a in applied], policy, below, settle=settle)
