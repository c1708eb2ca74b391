"""What every search strategy shares: the problem, the outcome of evaluating a setting, and the budget.

A strategy sees a base configuration's settings and an ``evaluate`` function, nothing else: the runner's
evaluate measures a setting (or reads it back when it is stored), a replay's evaluate looks it up in a saved
landscape. Skip-existing, resume and failure handling therefore live in one place, outside the strategies.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from search_space.setting import AccelSetting
from sweep.accelerators import describe


@dataclass(frozen=True)
class Outcome:
    """A setting's measurement as a strategy sees it."""

    setting: AccelSetting
    status: str
    """``done`` or ``failed`` (applied but changed nothing, or a library error)."""
    speedup: float | None = None
    score_loss: float | None = None
    stored: bool = False
    """True when it was read back instead of measured by this run."""

    def feasible(self, max_loss: float, quality_known: bool = True) -> bool:
        """Done, with a loss within ``max_loss``; where quality is not measured (speed only), done is enough."""
        if self.status != "done" or self.speedup is None:
            return False
        return not quality_known or (self.score_loss is not None and self.score_loss <= max_loss)


@dataclass(frozen=True)
class Problem:
    """One base configuration's search: its settings (baseline excluded) and the loss threshold."""

    label: str
    settings: tuple[AccelSetting, ...]
    max_loss: float
    seed: int = 0
    quality_known: bool = True
    """False for a speed-only search (random weights): then every measured setting counts as feasible and the
    search looks for the fastest."""
    predicted: Mapping[str, float] = field(default_factory=dict)
    """Speed-ups the speed model predicts, by setting key (those it can predict): priors that order and prune a
    search, never an outcome: only measured outcomes are reported."""

    def by_prediction(self, settings: Iterable[AccelSetting]) -> list[AccelSetting]:
        """``settings`` with a prediction, fastest predicted first."""
        return sorted((s for s in settings if s.key in self.predicted), key=lambda s: -self.predicted[s.key])

    def feasible(self, outcome: Outcome) -> bool:
        return outcome.feasible(self.max_loss, self.quality_known)


class BudgetExhausted(Exception):
    """Raised by :class:`Evaluations` when the next setting would exceed the trial or time budget."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Evaluations:
    """Evaluates settings at most once each, in order, within a budget; the strategies' only door to measurement.

    ``max_trials`` counts distinct settings evaluated (stored ones included, so a re-run with the same budget
    retraces the same path and measures nothing); ``deadline`` (a ``time.monotonic`` value) stops before a
    setting that would have to be measured once it has passed.
    """

    problem: Problem
    evaluate: Callable[[AccelSetting], Outcome]
    max_trials: int | None = None
    deadline: float | None = None
    is_stored: Callable[[AccelSetting], bool] = lambda _s: False
    order: list[Outcome] = field(default_factory=list)
    _seen: dict[str, Outcome] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._space = {s.key for s in self.problem.settings}

    def __contains__(self, setting: AccelSetting) -> bool:
        return setting.key in self._seen

    def known(self, setting: AccelSetting) -> Outcome | None:
        return self._seen.get(setting.key)

    def in_space(self, setting: AccelSetting) -> bool:
        return setting.key in self._space

    @property
    def count(self) -> int:
        return len(self.order)

    @property
    def exhausted(self) -> bool:
        return self.count >= len(self._space)

    def __call__(self, setting: AccelSetting) -> Outcome:
        if setting.key in self._seen:
            return self._seen[setting.key]
        if setting.key not in self._space:
            raise ValueError(f"{describe(setting)} is not in the space of {self.problem.label}")
        if self.max_trials is not None and self.count >= self.max_trials:
            raise BudgetExhausted(f"trial budget of {self.max_trials} reached")
        if self.deadline is not None and time.monotonic() >= self.deadline and not self.is_stored(setting):
            raise BudgetExhausted("time budget reached")
        outcome = self.evaluate(setting)
        self._seen[setting.key] = outcome
        self.order.append(outcome)
        return outcome

    def best(self) -> Outcome | None:
        """The fastest feasible outcome so far (ties: the smaller loss)."""
        feasible = [o for o in self.order if self.problem.feasible(o)]
        return max(feasible, key=lambda o: (o.speedup, -(o.score_loss or 0.0)), default=None)


@dataclass(frozen=True)
class SearchResult:
    strategy: str
    evaluated: int
    best: Outcome | None
    stop: str
    """Why the search ended: ``complete`` (the strategy's own rule) or the budget that ended it."""
    log: tuple[str, ...]
    outcomes: tuple[Outcome, ...] = ()
    """Every setting evaluated, in order."""


class Strategy(ABC):
    name: str

    @abstractmethod
    def run(self, evals: Evaluations) -> str:
        """Evaluate settings through ``evals`` until done; return how the search decided to stop."""

    def search(self, evals: Evaluations) -> SearchResult:
        try:
            stop = self.run(evals)
        except BudgetExhausted as exc:
            stop = exc.reason
            evals.log.append(f"stopped: {exc.reason}")
        return SearchResult(self.name, evals.count, evals.best(), stop, tuple(evals.log), tuple(evals.order))


def fmt_outcome(o: Outcome, max_loss: float) -> str:
    if o.status != "done" or o.speedup is None:
        return f"{describe(o.setting)}: failed"
    if o.score_loss is None:
        return f"{describe(o.setting)}: {o.speedup:.2f}x, quality unknown"
    mark = "ok" if o.feasible(max_loss) else "over"
    loss = f"{100 * o.score_loss:.2f}%"
    return f"{describe(o.setting)}: {o.speedup:.2f}x, loss {loss} ({mark})"
