"""Accelerator registry: the name used in a space file → its class."""

from __future__ import annotations

from sweep.accelerators.base import Accelerator, AppliedAccelerator, ParamSpec
from sweep.accelerators.deepcache import DeepCache
from sweep.accelerators.tome import ToMe

ACCELERATORS: dict[str, type[Accelerator]] = {cls.name: cls for cls in (DeepCache, ToMe)}

__all__ = ["ACCELERATORS", "Accelerator", "AppliedAccelerator", "DeepCache", "ParamSpec", "ToMe"]
