"""The shape of the problem: settings ordered by aggressiveness.

Each accelerator parameter declares whether larger values are more aggressive (``ParamSpec.aggressive``).
Setting p is *at most as aggressive* as q (p ≤ q) when every accelerator on in p is on in q with the same
unordered parameters and no ordered parameter more aggressive. Speed-up and score loss both tend to grow
along this order; the frontier strategy uses it to infer outcomes it has not measured.

A *line* is one accelerator with every parameter fixed except its main axis (DeepCache's cache_interval,
ToMe's ratio): a chain from the accelerator off to its most aggressive value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from search_space.setting import AccelSetting, ParamValue
from sweep.accelerators import ACCELERATORS


def _rank(accel: str, name: str, value: ParamValue) -> float:
    return float(ACCELERATORS[accel].param(name).aggressive) * float(value)


def axis_of(accel: str) -> str | None:
    """The accelerator's main aggressiveness axis: its first primary, ordered parameter."""
    for spec in ACCELERATORS[accel].params:
        if spec.primary and spec.aggressive:
            return spec.name
    return None


def part_leq(accel: str, p: Mapping[str, ParamValue], q: Mapping[str, ParamValue]) -> bool:
    for name, value in p.items():
        direction = ACCELERATORS[accel].param(name).aggressive
        if direction == 0:
            if q.get(name) != value:
                return False
        elif _rank(accel, name, value) > _rank(accel, name, q[name]):
            return False
    return True


def leq(p: AccelSetting, q: AccelSetting) -> bool:
    """p is at most as aggressive as q."""
    q_methods = dict(q)
    return all(name in q_methods and part_leq(name, params, q_methods[name]) for name, params in p)


@dataclass(frozen=True, eq=False)  # identity: lines are built once per search
class Line:
    accel: str
    axis: str | None
    fixed: tuple[tuple[str, ParamValue], ...]
    """The parameters held fixed along the line."""
    levels: tuple[Mapping[str, ParamValue], ...]
    """The accelerator's parameters at each level, least aggressive first (level 0 = off is implicit)."""

    def label(self) -> str:
        fixed = ", ".join(f"{k}={v}" for k, v in self.fixed if ACCELERATORS[self.accel].param(k).primary)
        return f"{self.accel}[{fixed}]" if fixed else self.accel

    def values(self) -> list[ParamValue]:
        return [lv[self.axis] for lv in self.levels] if self.axis else list(range(1, len(self.levels) + 1))


def lines_of(settings: Sequence[AccelSetting]) -> dict[str, list[Line]]:
    """Per accelerator, its lines, from the parameter sets that occur in ``settings``."""
    parts: dict[str, dict[str, Mapping[str, ParamValue]]] = {}
    for setting in settings:
        for name, params in setting:
            parts.setdefault(name, {})[AccelSetting.of({name: params}).key] = params
    result: dict[str, list[Line]] = {}
    for accel, by_key in sorted(parts.items()):
        axis = axis_of(accel)
        groups: dict[tuple[tuple[str, ParamValue], ...], list[Mapping[str, ParamValue]]] = {}
        for params in by_key.values():
            fixed = tuple(sorted((k, v) for k, v in params.items() if k != axis))
            groups.setdefault(fixed, []).append(params)
        lines = []
        for fixed, members in groups.items():
            members.sort(key=lambda m: _rank(accel, axis, m[axis]) if axis else 0.0)
            lines.append(Line(accel, axis, fixed, tuple(members)))
        # the most aggressive fixed parameters first: their boundaries bound the others'
        lines.sort(key=lambda ln: tuple(-_rank(accel, k, v) for k, v in ln.fixed if ACCELERATORS[accel].param(k).aggressive))
        result[accel] = lines
    return result
