"""The Accelerator interface: declared parameter axes, a support check, and a reversible apply().

One loaded pipeline serves every trial, so ``apply`` must return a handle whose ``remove`` restores it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from search_space.catalogue import ParamSpec
from search_space.setting import ParamValue
from sweep.errors import AcceleratorError

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline


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
    """One acceleration method: its parameter axes and what it applies to, declared on the class; ``apply``
    patches a loaded pipeline and returns a handle whose ``remove`` restores it exactly.

    Adding a method is one module with a subclass, plus its line in ``sweep/accelerators/__init__.py``.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[tuple[ParamSpec, ...]]
    denoisers: ClassVar[frozenset[str]]
    """Denoiser families it can patch (``unet``, ``transformer``); the space uses this to skip it elsewhere."""
    pipeline_classes: ClassVar[frozenset[str] | None] = None
    """diffusers pipeline classes it supports, where narrower than its denoisers (None: any of them)."""
    packages: ClassVar[tuple[str, ...]] = ()
    """Distributions it runs on: their versions (beyond the environment's own libraries) are part of the key of
    every speed record of a setting that uses it."""
    speed_depends_on_weights: ClassVar[bool] = False
    """True for methods that decide what to skip from the activations (DBCache-style): their speed measured with
    random weights says nothing about their speed with real ones."""
    absorbs: ClassVar[frozenset[str]] = frozenset()
    """Methods it applies itself when a setting combines them with it (T-GATE runs DeepCache its own way)."""
    excludes: ClassVar[frozenset[str]] = frozenset()
    """Methods it cannot be combined with; a space never combines them."""

    @classmethod
    def step_forms(cls, params: Mapping[str, ParamValue], steps: int) -> dict[str, float] | None:
        """What this method changes in a generation of ``steps`` denoising steps, as counts of named events whose
        cost a speed model fits (``deepcache.partial.b0``: 14 steps that run only branch 0). Each event's cost is
        the difference it makes to a full step, so a setting's time is the baseline's plus the sum over its
        events. None where the method's work is not known in advance (it depends on the activations) or not
        modelled: its settings get no prediction."""
        return None

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

    @classmethod
    def applies_to(cls, denoiser: str, pipeline_class: str) -> bool:
        return denoiser in cls.denoisers and (cls.pipeline_classes is None or pipeline_class in cls.pipeline_classes)

    @classmethod
    def describe_support(cls) -> str:
        if cls.pipeline_classes is not None:
            return ", ".join(sorted(cls.pipeline_classes))
        return " and ".join(sorted(cls.denoisers)) + " denoisers"

    def supports(self, pipe: DiffusionPipeline) -> str | None:
        """None if it can patch ``pipe``, else the reason it cannot."""
        name = type(pipe).__name__
        if self.pipeline_classes is not None and name not in self.pipeline_classes:
            return f"{self.name} supports {self.describe_support()}, not {name}"
        if not any(getattr(pipe, d, None) is not None for d in self.denoisers):
            return f"{self.name} patches {' or '.join(sorted(self.denoisers))} denoisers; {name} has none"
        return None

    def apply(
        self, pipe: DiffusionPipeline, params: Mapping[str, ParamValue],
        absorbed: Mapping[str, Mapping[str, ParamValue]] | None = None,
    ) -> AppliedAccelerator:
        """Patch ``pipe``; ``absorbed`` holds the parameters of methods in ``absorbs`` that the setting combines
        with this one (applied here, not by themselves). AcceleratorError where it does not support ``pipe``."""
        reason = self.supports(pipe)
        if reason:
            raise AcceleratorError(reason)
        return self._patch(pipe, params, absorbed or {})

    @abstractmethod
    def _patch(
        self, pipe: DiffusionPipeline, params: Mapping[str, ParamValue], absorbed: Mapping[str, Mapping[str, ParamValue]],
    ) -> AppliedAccelerator:
        """Patch a pipeline :meth:`supports` (checked by ``apply``)."""


Snapshot = dict[int, tuple[set[str], list[str]]]


def snapshot(modules: Iterable[object]) -> Snapshot:
    """The instance attributes each module holds now, and the order of its submodules (to undo, later, what a
    patch added or reordered)."""
    return {id(m): (set(m.__dict__), list(getattr(m, "_modules", {}))) for m in modules}


def restore_instance_attributes(modules: Iterable[object], before: Snapshot) -> None:
    """Remove every instance attribute a patch added to ``modules`` since ``before`` was taken (a replaced
    ``forward``, caches, counters) and put back the submodules' order a patch changed by re-registering one, so
    the modules are what they were."""
    for module in modules:
        names, order = before.get(id(module), (set(), []))
        for name in set(module.__dict__) - names:
            del module.__dict__[name]
        children = getattr(module, "_modules", None)
        if children is not None and list(children) != order and set(children) == set(order):
            reordered = {name: children[name] for name in order}
            children.clear()
            children.update(reordered)


class TimestepReader:
    """The current timestep of a transformer, for diffusers hooks that need it (PixArt pipelines do not expose
    it): a forward pre-hook reads the ``timestep`` argument once per step, one small device-to-host copy."""

    def __init__(self, transformer: Any) -> None:
        self.timestep = 1000

        def read(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
            self.timestep = int(kwargs["timestep"].flatten()[0].item())

        self._handle = transformer.register_forward_pre_hook(read, with_kwargs=True)

    def __call__(self) -> int:
        return self.timestep

    def remove(self) -> None:
        self._handle.remove()


def remove_diffusers_hooks(root: Any, names: Iterable[str]) -> None:
    """Remove diffusers hooks registered under ``names`` on ``root`` and every module under it."""
    from diffusers.hooks import HookRegistry

    registry = HookRegistry.check_if_exists_or_initialize(root)
    for name in names:
        registry.remove_hook(name, recurse=True)
