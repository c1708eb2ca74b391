"""What a space file may name, as seen by the parser: the acceleration methods with their parameter axes, the
pipeline aliases, the scheduler classes.

search_space/ declares the shapes it reads (``ParamSpec``, and the ``Method`` and ``Pipeline`` protocols); sweep/
supplies the catalogue (``sweep.study.catalogue``), so this layer needs nothing from the layers above it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from search_space.setting import ParamValue


@dataclass(frozen=True)
class ParamSpec:
    """One parameter axis of an accelerator, with its type, default and valid range."""

    name: str
    kind: type[int] | type[float] | type[bool]
    default: ParamValue
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[ParamValue, ...] | None = None
    help: str = ""
    primary: bool = False
    """Shown in short descriptions of a setting even at its default value."""
    aggressive: int = 0
    """+1: larger values are more aggressive (faster, further from the baseline's images); -1: smaller values
    are; 0: not ordered. The frontier strategy and the dominance order of settings rely on it."""

    def describe_valid(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.kind is bool:
            return "true or false"
        low = "-inf" if self.minimum is None else f"{self.minimum:g}"
        high = "inf" if self.maximum is None else f"{self.maximum:g}"
        return f"{self.kind.__name__} in [{low}, {high}]"

    def coerce(self, value: object) -> ParamValue:
        """Return ``value`` in canonical type, or raise ValueError saying what is valid."""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{value!r} is not {self.describe_valid()}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{value!r} is not {self.describe_valid()}")
        if self.kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{value!r} is not {self.describe_valid()}")
            coerced: ParamValue = int(value)
        else:
            coerced = float(value)
            if not math.isfinite(coerced):  # NaN passes every comparison below
                raise ValueError(f"{value!r} is not {self.describe_valid()}")
        if self.choices is not None and coerced not in self.choices:
            raise ValueError(f"{value!r} is not {self.describe_valid()}")
        if (self.minimum is not None and coerced < self.minimum) or (
            self.maximum is not None and coerced > self.maximum
        ):
            raise ValueError(f"{value!r} is not {self.describe_valid()}")
        return coerced


class Method(Protocol):
    """An acceleration method as the parser sees it (sweep's Accelerator classes are such)."""

    name: str
    params: tuple[ParamSpec, ...]
    excludes: frozenset[str]

    def applies_to(self, denoiser: str, pipeline_class: str) -> bool: ...
    def describe_support(self) -> str: ...


class Pipeline(Protocol):
    """A pipeline alias as the parser sees it."""

    alias: str
    pipeline_class: str
    default_model: str
    denoiser: str
    resolution: tuple[int, int]
    weights: tuple[str, ...]


@dataclass(frozen=True)
class Catalogue:
    methods: Mapping[str, type[Method]] | Mapping[str, Method]
    pipelines: Mapping[str, Pipeline]
    schedulers: Callable[[], list[str]]
    """Valid scheduler class names (called only when a space names one)."""
    synonyms: Mapping[str, str] = field(default_factory=dict)
    """Other spellings of pipeline aliases (``PixArt-alpha`` for ``PixArt-α``)."""
    scheduler_problem: Callable[[Pipeline, str, int], str | None] = lambda pipeline, scheduler, steps: None
    """Why a scheduler with a number of steps cannot drive a pipeline (None: it can)."""

    def alias(self, name: str) -> str:
        return self.synonyms.get(name, name)

    def combinable(self, names: Collection[str]) -> bool:
        """Whether these methods may share a setting (none of them excludes another)."""
        return not any(b in self.methods[a].excludes or a in self.methods[b].excludes
                       for a in names for b in names if a != b)
