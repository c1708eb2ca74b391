"""Search strategies over a base configuration's settings: grid, frontier, optuna."""

from __future__ import annotations

from sweep.study.strategies.base import (
    BudgetExhausted,
    Evaluations,
    Outcome,
    Problem,
    SearchResult,
    Strategy,
)
from sweep.study.strategies.frontier import Frontier
from sweep.study.strategies.grid import Grid
from sweep.study.strategies.optuna_study import OptunaSearch

STRATEGIES = ("grid", "frontier", "optuna")

__all__ = [
    "STRATEGIES", "BudgetExhausted", "Evaluations", "Frontier", "Grid", "OptunaSearch", "Outcome",
    "Problem", "SearchResult", "Strategy",
]
