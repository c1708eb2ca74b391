"""Statistics of measurement: warm-up detection, paired A/B timing with a confidence bound on the speed-up, a
first estimate from one short paired pass, and the paired score loss with its sequential rejection test.

Pure functions over numbers and callables, so the logic is tested on synthetic streams. GPUs drift by tens of
percent between repeats, so a precise speed-up is the ratio of the mean times of baseline (A) and accelerated
(B) runs made back to back, repeated until its 95% confidence interval is narrow enough.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from search_space import defaults


@dataclass(frozen=True)
class TimingPolicy:
    """How precise timing is done; each default is explained in search_space/defaults.py."""

    warmup_tolerance: float = defaults.WARMUP_TOLERANCE
    warmup_cap: int = defaults.WARMUP_CAP
    min_pairs: int = defaults.MIN_PAIRS
    max_pairs: int = defaults.MAX_PAIRS
    target_half_width: float = defaults.TARGET_HALF_WIDTH


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


def ratio_of_means_interval(baseline: Sequence[float], accelerated: Sequence[float],
                            confidence: float = defaults.CONFIDENCE) -> tuple[float, float]:
    """Confidence interval of mean(baseline) / mean(accelerated) over paired runs: the delta method on the log of
    the ratio, with the pairs' covariance (a drift both sides of a pair share cancels) and Student's t.

    The ratio of means is the speed-up as defined (time = mean seconds per image), not the median of per-pair
    ratios: a method whose calls are fast most of the time and slow now and then (T-GATE on PixArt at batch 1:
    0.70 s, and about one call in four 1.0–1.3 s, in the same process) is as slow as its mean, and a median
    would read it as its fast mode. With fewer than two pairs there is no spread: (min, max) of the ratios."""
    n = len(baseline)
    ratios = [b / a for b, a in zip(baseline, accelerated, strict=True)]
    mean_b, mean_a = statistics.fmean(baseline), statistics.fmean(accelerated)
    ratio = mean_b / mean_a
    if n < 2:
        return min(ratios), max(ratios)
    var_b, var_a = statistics.variance(baseline), statistics.variance(accelerated)
    cov = statistics.covariance(baseline, accelerated)
    var_log = max(0.0, (var_b / mean_b**2 + var_a / mean_a**2 - 2 * cov / (mean_b * mean_a)) / n)
    half = t_quantile(1 - (1 - confidence) / 2, n - 1) * math.sqrt(var_log)
    return ratio * math.exp(-half), ratio * math.exp(half)


@dataclass(frozen=True)
class Paired:
    """A paired measurement: per pair, baseline seconds and accelerated seconds. Its speed-up is the ratio of
    their means (the definition), with the interval of :func:`ratio_of_means_interval`."""

    baseline_seconds: tuple[float, ...]
    accelerated_seconds: tuple[float, ...]

    @property
    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.baseline_seconds, self.accelerated_seconds, strict=True)]

    @property
    def speedup(self) -> float:
        return statistics.fmean(self.baseline_seconds) / statistics.fmean(self.accelerated_seconds)

    @property
    def interval(self) -> tuple[float, float]:
        return ratio_of_means_interval(self.baseline_seconds, self.accelerated_seconds)

    @property
    def half_width(self) -> float:
        """Half the 95% CI of the speed-up, relative to the speed-up."""
        low, high = self.interval
        return (high - low) / 2 / self.speedup

    @property
    def pairs(self) -> int:
        return len(self.ratios)


def measure_paired(
    run_baseline: Callable[[int], float], run_accelerated: Callable[[int], float], batches: int, policy: TimingPolicy,
    below: float | None = None,
) -> Paired:
    """Interleave baseline and accelerated runs of the same batch until the CI is narrow.

    Pairs alternate their order (A B, B A, A B, ...), so a steady drift of the clock cancels in the ratio of
    the means. Pair i uses batch ``i % batches``, so the first ``batches`` pairs cover every prompt.
    With ``below`` (the lower end of the best speed-up's interval), timing also stops once this speed-up's
    whole interval lies under it: it cannot be the fastest, and a narrower interval would not change that.
    The one-setting case of :func:`measure_group`.
    """
    ((paired, _),), _rounds = measure_group(lambda b, _j: run_baseline(b) if _j is None else run_accelerated(b), 1,
                                            batches, policy, below)
    return paired


def measure_group(
    run: Callable[[int, int | None], float], members: int, batches: int, policy: TimingPolicy,
    below: float | None = None, *, settle: bool = True,
) -> tuple[list[tuple[Paired, str]], int]:
    """Time several settings against one baseline at once: each round runs the baseline once and every setting
    still timed once, on the same batch, so one baseline run serves every setting's pair (timed one setting after
    another, each precise timing ran the baseline as often as itself: on a drifting H100, 61–70% of a row's images
    went to precise timings, most of them baseline runs).

    ``run(batch, member)`` runs ``batch`` by the setting ``member`` (None: the baseline) and returns seconds per
    image. Rounds alternate their order (B S1 S2 … in one, … S2 S1 B in the next), so every setting sits at the
    same distance from its round's baseline run before it and after it, and a steady drift cancels as in
    :func:`measure_paired`; the settings' order rotates every two rounds, so that each takes every place in turn
    (a run two or three calls from its baseline run pairs more noisily than the next one, and the last setting of
    a round is the only one that runs twice without a switch). Each setting stops on its own rule, checked after
    every round once it has the minimum pairs: its interval within the target width; its whole interval under
    ``below`` or, with ``settle``, under the lower end of another group member's interval (one not settled itself);
    or the pair cap. A member's interval still moves while it is timed: a setting settled under it is checked again
    after every round, and timed on where it no longer lies under every bar, so that at the end each setting
    stored as below the leader lies under a final interval. Returns per setting its pairs and why it stopped
    (one of ``STOPS``), and the rounds run (the baseline's runs: a setting timed on after a gap may have fewer
    pairs than there were rounds).
    """
    base: list[float] = []
    accel: list[list[float]] = [[] for _ in range(members)]
    rounds: list[list[int]] = [[] for _ in range(members)]  # the rounds each setting took part in
    stopped: list[str | None] = [None] * members
    minimum = max(policy.min_pairs, batches)
    cap = max(policy.max_pairs, minimum)

    def paired(j: int) -> Paired:
        return Paired(tuple(base[r] for r in rounds[j]), tuple(accel[j]))

    while any(stop is None for stop in stopped):
        r = len(base)
        batch = r % batches
        # a setting timed on after a gap rejoins on a round of the other direction than its last: its rounds stay
        # balanced between the two orders
        active = [j for j in range(members) if stopped[j] is None and (not rounds[j] or (r - rounds[j][-1]) % 2 == 1)]
        turn = (r // 2) % members  # rotates the fixed list: a setting that stops does not reshuffle the others
        members_order = [j for j in (*range(turn, members), *range(turn)) if j in active]
        order: list[int | None] = [None, *members_order] if r % 2 == 0 else [*reversed(members_order), None]
        seconds = {j: run(batch, j) for j in order}
        base.append(seconds[None])
        for j in active:
            accel[j].append(seconds[j])
            rounds[j].append(r)
        timed = {j: paired(j) for j in range(members) if len(rounds[j]) >= minimum}

        def bar(j: int) -> float | None:
            bars = [below] if below is not None else []
            if settle:
                bars += [q.interval[0] for i, q in timed.items() if i != j and stopped[i] != "below leader"]
            return max(bars, default=None)

        for j in active:
            if j not in timed:
                continue
            p, b = timed[j], bar(j)
            if p.half_width <= policy.target_half_width:
                stopped[j] = "target width"
            elif b is not None and p.interval[1] < b:
                stopped[j] = "below leader"
            elif len(rounds[j]) >= cap:
                stopped[j] = "max pairs"
        for j in range(members):  # a setting settled under a bar that has dropped since: timed on (or capped)
            if stopped[j] == "below leader":
                b = bar(j)
                if b is None or timed[j].interval[1] >= b:
                    stopped[j] = None if len(rounds[j]) < cap else "max pairs"
    return [(paired(j), stopped[j] or "max pairs") for j in range(members)], len(base)


STOPS = ("target width", "below leader", "max pairs")


def stop_reason(paired: Paired, policy: TimingPolicy, below: float | None = None) -> str:
    """Why :func:`measure_paired` stopped, read from its pairs by its own rule: ``target width``, ``below
    leader`` (the interval fell under ``below``: settled, not precise), or ``max pairs``."""
    if paired.half_width <= policy.target_half_width:
        return "target width"
    if below is not None and paired.interval[1] < below:
        return "below leader"
    return "max pairs"


# -- first estimates -------------------------------------------------------------------------------------------------------------------------------------


def paired_estimate(
    baseline: Sequence[float], accelerated: Sequence[float], margin: float = defaults.PAIRED_FIRST_MARGIN,
    confidence: float = defaults.CONFIDENCE,
) -> tuple[float, float]:
    """Speed-up from one short paired pass (each batch's baseline and accelerated runs back to back):
    (mean baseline / mean accelerated, relative half-width).

    The runs of a pair are adjacent, so the clock's drift between minutes-apart passes does not enter: the
    half-width is Student's t over the pairs' log ratios plus a small ``margin`` for what a few pairs miss.
    A single pair has no spread to read; it gets the unpaired margin instead.
    """
    mean_b, mean_a = statistics.fmean(baseline), statistics.fmean(accelerated)
    n = len(baseline)
    if n < 2:
        return mean_b / mean_a, defaults.FIRST_ESTIMATE_MARGIN
    logs = [math.log(b / a) for b, a in zip(baseline, accelerated, strict=True)]
    half = t_quantile(1 - (1 - confidence) / 2, n - 1) * statistics.stdev(logs) / math.sqrt(n)
    return mean_b / mean_a, math.expm1(half) + margin


def log_spread(baseline: Sequence[float], accelerated: Sequence[float]) -> float | None:
    """Standard deviation of a paired pass's per-pair log speed-ups (None below two pairs)."""
    if len(baseline) < 2:
        return None
    return statistics.stdev(math.log(b / a) for b, a in zip(baseline, accelerated, strict=True))


# -- quality: CLIP scores paired over prompts --------------------------------------------------------------------


def t_quantile(p: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(p, df))


@dataclass(frozen=True)
class LossEstimate:
    """Score loss over the first ``n`` prompts: (mean baseline − mean accelerated) / mean baseline."""

    loss: float
    low: float | None
    high: float | None
    """Two-sided confidence interval, paired over prompts (None below two prompts)."""
    n: int
    standard_error: float | None


def paired_loss(baseline: Sequence[float], accelerated: Sequence[float], confidence: float = defaults.CONFIDENCE) -> LossEstimate | None:
    """The score loss of ``accelerated`` (the first n prompts' scores) against the same prompts' baseline scores.

    None when the baseline's mean score is not positive (the loss is undefined).
    """
    n = len(accelerated)
    base = list(baseline[:n])
    mean_b = statistics.fmean(base)
    if not mean_b > 0:
        return None
    differences = [b - a for b, a in zip(base, accelerated, strict=True)]
    loss = statistics.fmean(differences) / mean_b
    if n < 2:
        return LossEstimate(loss, None, None, n, None)
    se = statistics.stdev(differences) / math.sqrt(n) / mean_b
    half = t_quantile(1 - (1 - confidence) / 2, n - 1) * se
    return LossEstimate(loss, loss - half, loss + half, n, se)


MIN_PROMPTS_TO_REJECT = 3


def reject(estimate: LossEstimate, max_loss: float, looks: int, confidence: float = defaults.CONFIDENCE) -> bool:
    """Sequential rejection: stop a setting whose loss is above ``max_loss`` with ``confidence``.

    One-sided and paired over prompts; the test is made after each of ``looks`` batches, so each look spends
    (1 − confidence) / looks of the error (Bonferroni): over all looks, a setting truly within ``max_loss`` is
    rejected with probability at most 1 − confidence.
    """
    if estimate.n < MIN_PROMPTS_TO_REJECT or estimate.standard_error is None:
        return False
    alpha = (1 - confidence) / max(looks, 1)
    lower = estimate.loss - t_quantile(1 - alpha, estimate.n - 1) * estimate.standard_error
    return lower > max_loss
