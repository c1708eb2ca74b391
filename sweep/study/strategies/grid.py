"""Grid: every setting of the space, in the space's order."""

from __future__ import annotations

from sweep.study.strategies.base import Evaluations, Strategy, fmt_outcome


class Grid(Strategy):
    name = "grid"

    def run(self, evals: Evaluations) -> str:
        for setting in evals.problem.settings:
            evals(setting)
        best = evals.best()
        evals.log.append(
            f"grid: {evals.count} settings; best "
            + (fmt_outcome(best, evals.problem.max_loss) if best else "none within the threshold")
        )
        return "complete"
