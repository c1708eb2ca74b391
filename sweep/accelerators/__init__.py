"""Accelerator registry: the name used in a space file → its class; and applying a whole setting."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from search_space.setting import AccelSetting
from sweep.accelerators.base import Accelerator, AppliedAccelerator, ParamSpec
from sweep.accelerators.deepcache import DeepCache
from sweep.accelerators.tome import ToMe

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

ACCELERATORS: dict[str, type[Accelerator]] = {cls.name: cls for cls in (DeepCache, ToMe)}


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
            for name, params in self.setting:
                self._handles.append(ACCELERATORS[name]().apply(self.pipe, params))
            self.patched = sum(h.patched for h in self._handles)

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    @property
    def call(self) -> Callable[..., Any] | None:
        """The applied methods' own generate call, if one of them has one."""
        calls = [h.generate for h in self._handles if h.generate is not None]
        return calls[-1] if calls else None


__all__ = ["ACCELERATORS", "Accelerator", "AppliedAccelerator", "AppliedSetting", "DeepCache", "ParamSpec", "ToMe"]
