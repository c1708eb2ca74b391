"""A speed model per family (environment, pipeline, shape, dtype, batch): time per image as a linear sum of costs.

    time = fixed  +  steps × step[scheduler]  +  Σ over the setting's events  count × cost[event]

``fixed`` is what a generation pays once (the text encoder, the VAE decode, the call itself); ``step[scheduler]``
a full denoiser step with that scheduler's own work; each event (``deepcache.partial.b0``, ``tgate.after_gate``,
a ToMe setting's merged step) is what the method changes in a step, read from its schedule by
:meth:`Accelerator.step_forms`. The costs are fitted by least squares on relative error to every stored time of
the family: speed baselines and settings' speeds (precise where timed precisely, else first estimates).

A prediction is made only where the stored times determine it: the setting's counts must be a combination of
measured rows' counts (its vector lies in the row space of the fitted design), so an unmeasured scheduler, a
number of steps that cannot be told apart from the fixed cost, or a method never measured in the family gives
None, never a guess. Predictions order and price work; they are never stored or shown as measurements.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from search_space.setting import AccelSetting
from storage.measurements import SpeedObservation

ESTIMABLE_TOLERANCE = 1e-6
"""Largest relative part of a setting's counts outside the measured rows' span for which it is still predicted."""


def features(scheduler: str, steps: int, setting: AccelSetting | Mapping[str, Mapping[str, object]]) -> dict[str, float] | None:
    """The counts a generation is made of; None where one of its methods is not modelled (see module doc)."""
    from sweep.accelerators import ACCELERATORS

    methods = dict(setting) if isinstance(setting, AccelSetting) else dict(setting.items())
    counts = {"fixed": 1.0, f"step[{scheduler}]": float(steps)}
    if any(name not in ACCELERATORS for name in methods):
        return None
    forms = {name: ACCELERATORS[name].step_forms(ACCELERATORS[name].normalise(params), steps)
             for name, params in methods.items()}
    if any(f is None for f in forms.values()):
        return None
    if not methods:
        return counts
    if len(methods) == 1:
        counts.update(next(iter(forms.values())))  # type: ignore[arg-type]
        return counts
    if set(methods) == {"deepcache", "tome"}:
        # ToMe merges on every step; on DeepCache's partial steps it merges inside the live branch only, a cost
        # of its own: ToMe's event is split between full and partial steps
        (partial_name, partial), = forms["deepcache"].items()  # type: ignore[union-attr]
        (tome_name, _), = forms["tome"].items()  # type: ignore[union-attr]
        counts.update({partial_name: partial, f"{tome_name}@full": steps - partial,
                       f"{tome_name}@{partial_name}": partial})
        return counts
    return None  # other combinations interact in ways not modelled (T-GATE runs DeepCache its own way)


@dataclass(frozen=True)
class Fit:
    """One family's fitted costs."""

    columns: tuple[str, ...]
    costs: np.ndarray
    projection: np.ndarray
    """Onto the row space of the design: a vector it leaves unchanged is determined by the measured rows."""
    observations: int
    residuals: tuple[float, ...]
    """Each observation's relative error under the fit."""

    def predict(self, counts: Mapping[str, float] | None) -> float | None:
        if counts is None or any(k not in self.columns for k, v in counts.items() if v):
            return None
        x = np.array([counts.get(c, 0.0) for c in self.columns])
        outside = np.linalg.norm(x - x @ self.projection)
        if outside > ESTIMABLE_TOLERANCE * max(1.0, float(np.linalg.norm(x))):
            return None
        value = float(x @ self.costs)
        return value if value > 0 else None

    def cost(self, name: str) -> float | None:
        """One cost, where the measured rows determine it alone."""
        return self.predict({name: 1.0}) if name in self.columns else None


def fit(observations: Sequence[tuple[Mapping[str, float], float]]) -> Fit | None:
    """Least squares on relative error (each row divided by its time) over (counts, seconds) pairs."""
    rows = [(c, t) for c, t in observations if c is not None and t > 0]
    if not rows:
        return None
    columns = tuple(sorted({k for c, _ in rows for k, v in c.items() if v}))
    design = np.array([[c.get(k, 0.0) for k in columns] for c, _ in rows])
    times = np.array([t for _, t in rows])
    weighted = design / times[:, None]
    costs, *_ = np.linalg.lstsq(weighted, np.ones(len(rows)), rcond=None)
    projection = np.linalg.pinv(weighted) @ weighted
    residuals = tuple(float(r) for r in (design @ costs - times) / times)
    return Fit(columns, costs, projection, len(rows), residuals)


Family = tuple[int, str, int, int, str, int]


class SpeedModel:
    """Every family's fit from stored observations; ``predict`` a time per image, or None."""

    def __init__(self, observations: Iterable[SpeedObservation]) -> None:
        self.observations = list(observations)
        by_family: dict[Family, list[tuple[Mapping[str, float], float]]] = {}
        for o in self.observations:
            counts = features(o.scheduler, o.steps, o.settings)
            if counts is not None:
                by_family.setdefault(o.family, []).append((counts, o.time))
        self.fits: dict[Family, Fit] = {f: m for f, rows in by_family.items() if (m := fit(rows)) is not None}

    def predict(self, family: Family, scheduler: str, steps: int, setting: AccelSetting) -> float | None:
        held = self.fits.get(family)
        return held.predict(features(scheduler, steps, setting)) if held is not None else None

    def leave_one_out(self, observation: SpeedObservation) -> float | None:
        """The prediction for a stored observation from every other one of its family (predicted beside measured)."""
        others = [(features(o.scheduler, o.steps, o.settings), o.time) for o in self.observations
                  if o.family == observation.family and o is not observation]
        held = fit([(c, t) for c, t in others if c is not None])
        return held.predict(features(observation.scheduler, observation.steps, observation.settings)) if held else None
