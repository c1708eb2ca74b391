"""Frontier search: use the problem's shape to measure only the settings near the loss boundary.

Speed-up and score loss both grow along each accelerator's aggressiveness axis (``order.py``). So:

1. **Axes**: on every line (one accelerator, its other parameters fixed), a binary search finds the last
   level whose loss is within the threshold. Outcomes implied by the order are not measured: a setting less
   aggressive than a measured feasible one is feasible, one more aggressive than a measured infeasible one
   is not. Because the shape is only approximately monotone (timing noise, score noise, real kinks), the
   search then *probes* past the boundary; a feasible probe re-opens the search above it.
2. **Combinations**: for every pair of lines of different accelerators, a staircase walk from (A at its
   boundary, B off) adds B's levels while feasible and backs A off when not, visiting exactly the corners of
   the feasible region of that pair (at most len(A) + len(B) settings, fewer with implications).
3. **Polish**: from the best feasible setting, every immediate more-aggressive neighbour (any accelerator,
   including one not yet used) is measured, even one the order says must be over the threshold; a better one
   becomes the new best and the polish repeats. This covers three or more accelerators and the places where
   the shape bends (score noise: adding ToMe to DeepCache can *lower* a measured loss).

Only measured outcomes are ever reported as the best; implications and the speed model's predicted speed-ups
(``Problem.predicted``: the order in which pairs are walked) steer the search, never the result.
"""

from __future__ import annotations

import itertools

from search_space.setting import AccelSetting
from sweep.accelerators import describe
from sweep.study.strategies.base import Evaluations, Outcome, Strategy, fmt_outcome
from sweep.study.strategies.order import Line, leq, lines_of


class Frontier(Strategy):
    name = "frontier"

    def __init__(self, probes: int = 1) -> None:
        self.probes = probes

    # -- knowledge -------------------------------------------------------------------------------------

    def _passes(self, o: Outcome, evals: Evaluations) -> bool:
        """For navigation, a failed trial (applied but changed nothing) counts as within the threshold."""
        return evals.problem.feasible(o) or o.status == "failed"

    def _implied(self, evals: Evaluations, setting: AccelSetting) -> bool | None:
        for o in evals.order:
            if o.status != "done":
                continue
            if evals.problem.feasible(o) and leq(setting, o.setting):
                return True
            if not evals.problem.feasible(o) and leq(o.setting, setting):
                return False
        return None

    def _judge(self, evals: Evaluations, setting: AccelSetting) -> bool:
        known = evals.known(setting)
        if known is not None:
            return self._passes(known, evals)
        implied = self._implied(evals, setting)
        if implied is not None:
            return implied
        return self._passes(evals(setting), evals)

    # -- phase 1: one line -----------------------------------------------------------------------------

    def _line_setting(self, line: Line, level: int) -> AccelSetting:
        return AccelSetting.of({line.accel: line.levels[level - 1]})

    def _search_line(self, evals: Evaluations, line: Line) -> int:
        t = evals.problem.max_loss
        n = len(line.levels)
        levels = [lv for lv in range(1, n + 1) if evals.in_space(self._line_setting(line, lv))]
        if not levels:
            return 0
        lo, hi = 0, len(levels) + 1  # indices into levels, 1-based; lo passes, hi fails
        notes: list[str] = []
        while True:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if self._judge(evals, self._line_setting(line, levels[mid - 1])):
                    lo = mid
                else:
                    hi = mid
            reopened = False
            for k in range(self.probes):
                probe = hi + 1 + k
                if probe > len(levels):
                    break
                outcome = evals(self._line_setting(line, levels[probe - 1]))
                if self._passes(outcome, evals):
                    notes.append(f"probe {line.values()[levels[probe - 1] - 1]} past the boundary passed "
                                 f"({fmt_outcome(outcome, t)}): not monotone here, searching above it")
                    lo, hi, reopened = probe, len(levels) + 1, True
                    break
                notes.append(f"probe {line.values()[levels[probe - 1] - 1]} over the threshold, as the shape predicts")
            if not reopened:
                break
        boundary = levels[lo - 1] if lo else 0
        if boundary:
            top = self._line_setting(line, boundary)
            if top not in evals and self._implied(evals, top) is not True:
                evals(top)
        values = line.values()
        evals.log.append(
            f"axis {line.label()} along {line.axis or 'level'} {values}: last within {100 * t:g}% = "
            + (str(values[boundary - 1]) if boundary else "none (even the mildest level is over)")
            + ("; " + "; ".join(notes) if notes else "")
        )
        return boundary

    # -- phase 2: pairs of lines -----------------------------------------------------------------------

    def _staircase(self, evals: Evaluations, a: Line, b: Line, bounds: dict[Line, int]) -> None:
        i, j = bounds[a], 0
        corners: list[AccelSetting] = []
        while i >= 1 and j < len(b.levels):
            setting = AccelSetting.of({a.accel: a.levels[i - 1], b.accel: b.levels[j]})
            if not evals.in_space(setting):
                break
            if self._judge(evals, setting):
                j += 1
                corners = [c for c in corners if not leq(c, setting)] + [setting]
            else:
                i -= 1
        measured = [evals.known(c) for c in corners]
        shown = ", ".join(fmt_outcome(o, evals.problem.max_loss) for o in measured if o is not None)
        evals.log.append(f"pair {a.label()} × {b.label()}: " + (f"corners {shown}" if shown else "no combination within the threshold"))

    # -- phase 3: neighbours of the best -----------------------------------------------------------------

    def _polish(self, evals: Evaluations) -> None:
        t = evals.problem.max_loss
        space = evals.problem.settings
        while True:
            best = evals.best()
            if best is None:
                return
            above = [s for s in space if s != best.setting and leq(best.setting, s)]
            immediate = [s for s in above if not any(r != s and leq(r, s) for r in above)]
            tried = against_order = 0
            moved = None
            for s in immediate:
                if s in evals:
                    continue
                # measured even when the order says it must be over: this is where noise and real kinks hide
                against_order += self._implied(evals, s) is False
                tried += 1
                o = evals(s)
                if evals.problem.feasible(o) and o.speedup is not None and o.speedup > (best.speedup or 0.0):
                    moved = o
                    break
            if moved is None:
                evals.log.append(
                    f"polish around {describe(best.setting)}: {tried} neighbour(s) measured "
                    f"({against_order} the order predicted over the threshold), none better"
                )
                return
            evals.log.append(
                f"polish: {fmt_outcome(moved, t)} beats {describe(best.setting)}"
                + (" (the order had predicted it over the threshold)" if against_order else "")
            )

    def run(self, evals: Evaluations) -> str:
        lines = lines_of(evals.problem.settings)
        bounds: dict[Line, int] = {}
        for accel_lines in lines.values():
            for line in accel_lines:
                bounds[line] = self._search_line(evals, line)
        pairs = [
            (a, b) for (_, la), (_, lb) in itertools.combinations(lines.items(), 2)
            for a in la for b in lb if bounds[a] and bounds[b]
        ]
        # Most promising pairs first: by the speed model's prediction for the pair's most aggressive combination
        # within both boundaries where it predicts every combination of the pair, else by the product of its
        # lines' best single speed-ups. A pair is walked only if an optimistic estimate of its best combination
        # (the product of its lines' best single speed-ups, at least 1 each, times the largest combined/product
        # ratio seen so far, plus 10%) could beat the best measured; combinations can beat the product (ToMe slows
        # an H100 alone yet speeds up DeepCache), which is why the ratio is learnt rather than assumed; the most
        # promising pair is always walked.
        def line_best(line: Line) -> float:
            speeds = [o.speedup for lv in range(1, bounds[line] + 1)
                      if (o := evals.known(self._line_setting(line, lv))) is not None and evals.problem.feasible(o) and o.speedup]
            return max(speeds + [1.0])  # an accelerator slower alone may still help in a combination

        def promise(pair: tuple[Line, Line]) -> tuple[bool, float]:
            a, b = pair
            keys = [AccelSetting.of({a.accel: a.levels[i], b.accel: b.levels[j]}).key
                    for i in range(bounds[a]) for j in range(bounds[b])]
            if keys and all(k in evals.problem.predicted for k in keys):
                return True, max(evals.problem.predicted[k] for k in keys)
            return False, line_best(a) * line_best(b)

        ratio = 1.0
        for rank, (a, b) in enumerate(sorted(pairs, key=promise, reverse=True)):
            best = evals.best()
            estimate = line_best(a) * line_best(b) * ratio * 1.1
            if rank and best is not None and best.speedup is not None and estimate < best.speedup:
                evals.log.append(
                    f"pair {a.label()} × {b.label()} skipped: optimistic estimate {estimate:.2f}x < best {best.speedup:.2f}x"
                )
                continue
            before = len(evals.order)
            self._staircase(evals, a, b, bounds)
            for o in evals.order[before:]:
                if o.status == "done" and o.speedup and len(o.setting.methods) == 2:
                    singles = [line_best(a), line_best(b)]
                    ratio = max(ratio, o.speedup / (singles[0] * singles[1]))
        self._polish(evals)
        best = evals.best()
        evals.log.append(
            f"best: {fmt_outcome(best, evals.problem.max_loss) if best else 'no setting within the threshold'}; "
            f"{evals.count} of {len(evals.problem.settings)} settings evaluated"
        )
        return "complete"
