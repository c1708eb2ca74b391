"""Search strategies over a base configuration's settings: grid, frontier, optuna."""

from __future__ import annotations

from sweep.strategies.base import (
    BudgetExhausted,
    Evaluations,
    Outcome,
    Problem,
    SearchResult,
    Strategy,
)
from sweep.strategies.frontier import Frontier
from sweep.strategies.grid import Grid
from sweep.strategies.optuna_study import OptunaSearch

STRATEGIES = ("grid", "frontier", "optuna")

__all__ = [
    "STRATEGIES", "BudgetExhausted", "Evaluations", "Frontier", "Grid", "OptunaSearch", "Outcome",
    "Problem", "SearchResult", "Strategy",
]
