"""The Accelerator interface: declared parameter axes, a support check, and a reversible apply().

One loaded pipeline serves every trial, so ``apply`` must return a handle whose ``remove`` restores it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from search_space.setting import ParamValue

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline


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
        if self.choices is not None and coerced not in self.choices:
            raise ValueError(f"{value!r} is not {self.describe_valid()}")
        if (self.minimum is not None and coerced < self.minimum) or (
            self.maximum is not None and coerced > self.maximum
        ):
            raise ValueError(f"{value!r} is not {self.describe_valid()}")
        return coerced


class AppliedAccelerator(ABC):
    """What ``apply`` returns: how many modules it patched, the call that generates if the method has its own,
    and how to undo it."""

    patched: int
    generate: Callable[..., Any] | None = None
    """Called instead of the pipeline's ``__call__`` (same arguments) while applied, for methods that generate
    through their own entry point; None for methods that patch modules only."""

    @abstractmethod
    def remove(self) -> None: ...


class Accelerator(ABC):
    name: ClassVar[str]
    params: ClassVar[tuple[ParamSpec, ...]]
    denoisers: ClassVar[frozenset[str]]
    """Denoiser families it can patch (``unet``, ``transformer``); the space uses this to skip it elsewhere."""

    @classmethod
    def param(cls, name: str) -> ParamSpec:
        for spec in cls.params:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @classmethod
    def normalise(cls, values: Mapping[str, object]) -> dict[str, ParamValue]:
        """Complete ``values`` with defaults and coerce them; ValueError names a bad or unknown parameter."""
        known = {p.name for p in cls.params}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r}; valid: {', '.join(sorted(known))}")
        return {p.name: p.coerce(values.get(p.name, p.default)) for p in cls.params}

    @classmethod
    def short(cls, values: Mapping[str, ParamValue]) -> str:
        """``name(p=v, ...)`` with the primary parameters and any that differ from their default."""
        shown = [
            f"{p.name}={values[p.name]}" for p in cls.params
            if p.name in values and (p.primary or values[p.name] != p.default)
        ]
        return f"{cls.name}({', '.join(shown)})"

    @abstractmethod
    def supports(self, pipe: DiffusionPipeline) -> str | None:
        """None if it can patch ``pipe``, else the reason it cannot."""

    @abstractmethod
    def apply(self, pipe: DiffusionPipeline, params: Mapping[str, ParamValue]) -> AppliedAccelerator: ...
