"""Replay a strategy on a saved landscape: lookups instead of generation.

A landscape is one base configuration measured once as a full grid (``scripts/export_landscape.py`` writes
it from a database). Replaying runs a strategy with an ``evaluate`` that reads the landscape, so a strategy's
cost (how many trials until it finds the grid's upper bound) is measured in trials, deterministically for a
seed, in milliseconds.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from search_space.setting import AccelSetting
from storage.measurements import QualityResult, SpeedResult
from sweep.study.strategies.base import Evaluations, Outcome, Problem, SearchResult, Strategy


@dataclass(frozen=True)
class Point:
    setting: AccelSetting
    status: str
    speedup: float | None
    losses: dict[str, float | None]
    ci_half_width: float | None
    time: float | None = None
    """Seconds per image (for a speed model fitted on the landscape)."""


@dataclass(frozen=True)
class Landscape:
    label: str
    points: tuple[Point, ...]
    meta: dict[str, object]

    @classmethod
    def load(cls, path: str | Path) -> Landscape:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        points = tuple(
            Point(AccelSetting.of(t["settings"]), t["status"], t.get("speedup"),
                  {k: t.get(k) for k in ("score_loss", "image_deviation")}, t.get("ci_half_width"), t.get("time"))
            for t in data["trials"]
        )
        return cls(str(data["label"]), points, {k: v for k, v in data.items() if k != "trials"})

    def loss(self, point: Point, metric: str) -> float | None:
        return point.losses.get(metric)

    def feasible(self, point: Point, max_loss: float, metric: str) -> bool:
        loss = self.loss(point, metric)
        return point.status == "done" and point.speedup is not None and loss is not None and loss <= max_loss

    def upper_bound(self, max_loss: float, metric: str = "score_loss") -> float:
        """The grid's upper bound: the largest speed-up within the threshold (1.0 if none)."""
        return max((p.speedup for p in self.points if self.feasible(p, max_loss, metric)), default=1.0)  # type: ignore[type-var,return-value]

    def model_predictions(self, combinations_every: int = 12) -> dict[str, float]:
        """What the speed model predicts for the landscape's settings, fitted on its baseline, its single-method
        settings and one combination in ``combinations_every`` (what a first row leaves; the rest are predicted)."""
        from storage.measurements import SpeedObservation
        from sweep.measurement.speed_model import SpeedModel

        base: dict = self.meta["base"]  # type: ignore[assignment]
        family = (1, base["pipeline"], base["height"], base["width"], base["dtype"], 1)

        def observation(settings: AccelSetting, time: float) -> SpeedObservation:
            return SpeedObservation(*family, base["scheduler"], base["steps"], {n: dict(p) for n, p in settings},  # type: ignore[arg-type]
                                    time, "precise")

        combos = [p for p in self.points if len(p.setting.methods) == 2 and p.time]
        fitted = [p for p in self.points if len(p.setting.methods) == 1 and p.time] + combos[::combinations_every]
        model = SpeedModel([observation(AccelSetting.baseline(), float(self.meta["baseline_time"])),  # type: ignore[arg-type]
                            *(observation(p.setting, p.time) for p in fitted)])  # type: ignore[arg-type]
        baseline = model.predict(family, base["scheduler"], base["steps"], AccelSetting.baseline())  # type: ignore[arg-type]
        if not baseline:
            return {}
        return {p.setting.key: baseline / t for p in self.points
                if (t := model.predict(family, base["scheduler"], base["steps"], p.setting))}  # type: ignore[arg-type]

    def problem(self, max_loss: float, seed: int, predicted: Mapping[str, float] | None = None,
                quality_known: bool = True) -> Problem:
        return Problem(self.label, tuple(p.setting for p in self.points), max_loss, seed, quality_known, predicted or {})


@dataclass(frozen=True)
class Replay:
    result: SearchResult
    order: tuple[Outcome, ...]
    bound: float

    def trials_to_find(self, landscape: Landscape, max_loss: float, metric: str, tolerance: float = 0.01) -> int | None:
        """1-based position of the first evaluated setting that is truly within the threshold and within
        ``tolerance`` of the grid's upper bound; None if the strategy never evaluated one."""
        truth = {p.setting.key: p for p in landscape.points}
        for i, o in enumerate(self.order, 1):
            p = truth[o.setting.key]
            if landscape.feasible(p, max_loss, metric) and p.speedup >= (1 - tolerance) * self.bound:  # type: ignore[operator]
                return i
        return None


def replay(
    make: Callable[[], Strategy], landscape: Landscape, *, max_loss: float, seed: int, metric: str = "score_loss",
    noise: float = 0.0, max_trials: int | None = None, predicted: Mapping[str, float] | None = None,
    speed_only: bool = False,
) -> Replay:
    """Run a fresh strategy against the landscape. ``noise`` > 0 perturbs each looked-up speed-up by a normal
    draw with that many times its measured 95% half-width (seeded), as a re-measurement would; ``predicted``:
    the speed-ups a speed model predicts (the search's priors); ``speed_only``: the search ignores the losses and
    looks for the fastest, as on random weights."""
    truth = {p.setting.key: p for p in landscape.points}
    rng = random.Random(seed)

    def evaluate(setting: AccelSetting) -> Outcome:
        p = truth[setting.key]
        speedup = p.speedup
        if noise and speedup is not None and p.ci_half_width:
            speedup *= 1 + rng.gauss(0.0, noise * p.ci_half_width / 1.96)
        return Outcome(setting, p.status, speedup, landscape.loss(p, metric), stored=False)

    evals = Evaluations(landscape.problem(max_loss, seed, predicted, not speed_only), evaluate, max_trials=max_trials)
    result = make().search(evals)
    return Replay(result, tuple(evals.order), landscape.upper_bound(max_loss, metric))


def _landscape_point(key: str, speed: SpeedResult, quality: QualityResult | None) -> dict[str, object]:
    done = speed.usable and quality is not None and quality.status == "done"
    return {
        "settings": json.loads(key), "status": "done" if done else "failed", "speedup": speed.published,
        "ci_half_width": speed.published_half_width, "precise": speed.precise and not speed.settled_below,
        "score_loss": quality.score_loss if quality else None,
        "image_deviation": quality.image_deviation if quality else None, "time": speed.published_time,
        "reason": speed.reason or (quality.reason if quality else None),
    }


def export_landscape(url: str, out: str | Path, *, description: str = "") -> list[Path]:
    """Write one landscape file per measured (base config, environment, protocols) of a database: each setting's
    speed-up (precise where timed so, else its first estimate) joined with what its quality pass measured.

    With one scope in the database, ``out`` is the file; with several, ``out`` is a folder.
    """
    from sqlalchemy import select

    from storage import Repository
    from storage.models import QualityBaselineRow, SpeedBaselineRow

    repo = Repository(url)
    written: list[Path] = []
    with repo.session() as s:
        pairs = [(sb, qb) for sb in s.scalars(select(SpeedBaselineRow)) for qb in s.scalars(select(QualityBaselineRow))
                 if qb.base_config.speed_config_id == sb.speed_config_id]
        for sb, qb in pairs:
            scope = repo.scope_of(qb.base_config_id, sb.environment_id, qb.quality_protocol_id, sb.timing_protocol_id)
            speeds, qualities = repo.measurements.speeds(scope), repo.measurements.qualities(scope)
            base = qb.base_config
            data = {
                "label": f"{base.pipeline} / {base.scheduler} / {base.steps} steps",
                "description": description,
                "device": sb.environment.device,
                "libraries": sb.environment.details,
                "base": {"pipeline": base.pipeline, "scheduler": base.scheduler, "steps": base.steps,
                         "height": base.height, "width": base.width, "dtype": base.dtype, "weights": base.weights},
                "scorer": qb.quality_protocol.scorer,
                "quality_meaningful": base.weights == "pretrained" and not qb.quality_protocol.scorer.endswith(":random"),
                "baseline_time": sb.time,
                "trials": [_landscape_point(key, sp, qualities.get(key)) for key, sp in sorted(speeds.items())],
            }
            target = Path(out)
            if len(pairs) > 1:
                target.mkdir(parents=True, exist_ok=True)
                target = target / f"{base.pipeline}-{base.scheduler}-{base.steps}-{sb.id}-{qb.id}.json".replace("/", "_")
            target.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
            written.append(target)
    repo.close()
    return written
