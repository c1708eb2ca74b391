#!/usr/bin/env python3
"""How the speed model's priors change the optuna and frontier searches, replayed on the H100 landscape
(tests/data/landscape-h100-sd15.json; predictions from a model fitted on its single-method settings and one
combination in twelve). Prints, per threshold and seed, the trial on which each search first reached a setting
within 1% of the grid's bound, without and with priors ("None": never), and the settings evaluated.

    python scripts/replay_priors.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sweep.study.strategies import Frontier, OptunaSearch  # noqa: E402
from sweep.study.strategies.replay import Landscape, replay  # noqa: E402

METRIC = "image_deviation"


def main() -> int:
    landscape = Landscape.load(ROOT / "tests" / "data" / "landscape-h100-sd15.json")
    predicted = landscape.model_predictions()
    print(f"{len(predicted)} of {len(landscape.points)} settings predicted")
    print("| search | threshold | seed | trials to find, without / with priors | evaluated, without / with |")
    print("|---|---|---:|---|---|")
    for threshold, speed_only in ((0.0056, False), (0.0073, False), (0.0103, False), (0.0, True)):
        label = "speed only" if speed_only else f"{100 * threshold:.2f}%"
        for name, make, seeds in (("optuna", lambda: OptunaSearch(patience=15), range(4)), ("frontier", Frontier, range(1))):
            for seed in seeds:
                runs = [replay(make, landscape, max_loss=threshold, seed=seed, metric=METRIC, speed_only=speed_only,
                               predicted=p) for p in (None, predicted)]
                if speed_only:
                    fastest = max(p.speedup or 0.0 for p in landscape.points)
                    found = [next((i for i, o in enumerate(r.order, 1) if o.speedup == fastest), None) for r in runs]
                else:
                    found = [r.trials_to_find(landscape, threshold, METRIC) for r in runs]
                print(f"| {name} | {label} | {seed} | {found[0]} / {found[1]} | "
                      f"{runs[0].result.evaluated} / {runs[1].result.evaluated} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
