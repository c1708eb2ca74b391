"""Accelerator registry: the name used in a space file → its class; and applying a whole setting."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from search_space.catalogue import ParamSpec
from search_space.setting import AccelSetting
from sweep.accelerators.base import Accelerator, AppliedAccelerator
from sweep.accelerators.cache_dit import CacheDiT
from sweep.accelerators.deepcache import DeepCache
from sweep.accelerators.fastercache import FasterCache
from sweep.accelerators.pab import PyramidAttentionBroadcast
from sweep.accelerators.tgate import TGate
from sweep.accelerators.tome import ToMe

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

ACCELERATORS: dict[str, type[Accelerator]] = {
    cls.name: cls for cls in (DeepCache, ToMe, TGate, CacheDiT, PyramidAttentionBroadcast, FasterCache)
}


def combinable(names: Collection[str]) -> bool:
    """Whether these methods may share a setting (none of them excludes another)."""
    return not any(b in ACCELERATORS[a].excludes or a in ACCELERATORS[b].excludes for a in names for b in names if a != b)


def speed_depends_on_weights(setting: AccelSetting) -> bool:
    return any(ACCELERATORS[name].speed_depends_on_weights for name, _ in setting)


def setting_packages_key(setting: AccelSetting) -> str:
    """The versions of exactly the packages this setting's methods declare, beyond the environment's own
    libraries: part of a speed record's key ("" for the baseline and for methods built into diffusers)."""
    from sweep.measurement.environment import packages_key

    return packages_key(p for name, _ in setting for p in ACCELERATORS[name].packages)


def describe(setting: AccelSetting) -> str:
    """``deepcache(cache_interval=3, cache_branch_id=0) + tome(ratio=0.5, max_downsample=1)``; ``baseline``."""
    if setting.is_baseline:
        return "baseline"
    return " + ".join(ACCELERATORS[name].short(params) for name, params in setting)


class AppliedSetting:
    """A setting switched on and off on one loaded pipeline; switching is idempotent and happens outside timing."""

    def __init__(self, pipe: DiffusionPipeline, setting: AccelSetting) -> None:
        self.pipe = pipe
        self.setting = setting
        self._handles: list[AppliedAccelerator] = []
        self.patched = 0

    @property
    def on(self) -> bool:
        return bool(self._handles)

    def apply(self) -> None:
        if not self._handles:
            methods = dict(self.setting)
            absorbed = {a: b for b in methods for a in methods if a != b and a in ACCELERATORS[b].absorbs}
            for name, params in methods.items():
                if name in absorbed:
                    continue  # the method absorbing it applies it its own way
                mine = {a: methods[a] for a, b in absorbed.items() if b == name}
                self._handles.append(ACCELERATORS[name]().apply(self.pipe, params, mine))
            self.patched = sum(h.patched for h in self._handles)

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    @property
    def call(self) -> Callable[..., Any] | None:
        """The applied methods' own generate call, if one of them has one."""
        calls = [h.generate for h in self._handles if h.generate is not None]
        return calls[-1] if calls else None


__all__ = [
    "ACCELERATORS", "Accelerator", "AppliedAccelerator", "AppliedSetting", "CacheDiT", "DeepCache", "FasterCache", "ParamSpec",
    "PyramidAttentionBroadcast", "TGate", "ToMe", "combinable", "describe", "setting_packages_key",
    "speed_depends_on_weights",
]
