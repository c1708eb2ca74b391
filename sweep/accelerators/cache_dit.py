"""DBCache (cache-dit, Vipshop) on a DiT's transformer blocks: the first ``Fn_compute_blocks`` and last
``Bn_compute_blocks`` blocks always run; the middle ones are skipped, their residual reused, while the first
blocks' output changes by less than ``residual_diff_threshold``; optionally TaylorSeer extrapolates the cached
residual (``taylorseer_order`` > 0).

Through ``cache_dit.enable_cache(pipe, cache_config=DBCacheConfig(...), calibrator_config=...)`` and
``cache_dit.disable_cache(pipe)``; ``cache_dit.summary(pipe)`` reports the steps it cached. Whether a step is
skipped depends on the activations, so its speed depends on the weights: measured with random weights it is
stored, flagged, and kept out of speed maps and bounds unless asked for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, ClassVar

from search_space.catalogue import ParamSpec
from search_space.setting import ParamValue
from sweep.accelerators.base import (
    Accelerator,
    AppliedAccelerator,
    restore_instance_attributes,
    snapshot,
)
from sweep.errors import AcceleratorError

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline


def _import_quietly() -> ModuleType:
    """cache-dit logs to stdout at INFO level from every module (it would mix into `--format json` output);
    its level is read from the environment when it is first imported. A user's own setting wins."""
    os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "error")
    import cache_dit

    return cache_dit


def cached_steps(pipe: DiffusionPipeline) -> int:
    """Steps the cache skipped in the last generation, from cache-dit's own summary."""
    return max((len(s.cached_steps) for s in _import_quietly().summary(pipe, logging=False)), default=0)


class _Applied(AppliedAccelerator):
    def __init__(self, pipe: DiffusionPipeline, params: Mapping[str, ParamValue]) -> None:
        cache_dit = _import_quietly()
        self._pipe = pipe
        self._modules = list(pipe.transformer.modules())
        self._before = snapshot(self._modules)
        config = cache_dit.DBCacheConfig(
            Fn_compute_blocks=int(params["Fn_compute_blocks"]), Bn_compute_blocks=int(params["Bn_compute_blocks"]),
            residual_diff_threshold=float(params["residual_diff_threshold"]),
            max_warmup_steps=int(params["max_warmup_steps"]), max_cached_steps=int(params["max_cached_steps"]),
        )
        order = int(params["taylorseer_order"])
        calibrator = cache_dit.TaylorSeerCalibratorConfig(taylorseer_order=order) if order > 0 else None
        cache_dit.enable_cache(pipe, cache_config=config, calibrator_config=calibrator)
        self.patched = len(pipe.transformer.transformer_blocks)

    def remove(self) -> None:
        _import_quietly().disable_cache(self._pipe)
        restore_instance_attributes(self._modules, self._before)  # the hooks' forward and their statistics


class CacheDiT(Accelerator):
    name: ClassVar[str] = "cache_dit"
    description: ClassVar[str] = ("cache-dit DBCache: skip a DiT's middle blocks while the first blocks' output "
                                  "barely changes (optionally TaylorSeer)")
    denoisers: ClassVar[frozenset[str]] = frozenset({"transformer"})
    pipeline_classes: ClassVar[frozenset[str] | None] = frozenset({"PixArtAlphaPipeline", "PixArtSigmaPipeline"})
    packages: ClassVar[tuple[str, ...]] = ("cache-dit",)
    speed_depends_on_weights: ClassVar[bool] = True
    excludes: ClassVar[frozenset[str]] = frozenset({"tgate", "pab", "fastercache"})  # all rewrite the blocks' path
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("residual_diff_threshold", float, 0.08, minimum=0.0, maximum=10.0,
                  help="skip while the first blocks' relative change is below this", primary=True, aggressive=+1),
        ParamSpec("Fn_compute_blocks", int, 8, minimum=1, maximum=1000, help="first blocks always computed",
                  primary=True, aggressive=-1),
        ParamSpec("Bn_compute_blocks", int, 0, minimum=0, maximum=1000, help="last blocks always computed",
                  aggressive=-1),
        ParamSpec("max_warmup_steps", int, 8, minimum=0, maximum=1000, help="first steps never cached",
                  aggressive=-1),
        ParamSpec("max_cached_steps", int, -1, minimum=-1, maximum=1000, help="cap on cached steps (-1: none)"),
        ParamSpec("taylorseer_order", int, 0, minimum=0, maximum=4, help="TaylorSeer order (0: off)"),
    )

    def _patch(
        self, pipe: DiffusionPipeline, params: Mapping[str, ParamValue], absorbed: Mapping[str, Mapping[str, ParamValue]],
    ) -> AppliedAccelerator:
        blocks = len(pipe.transformer.transformer_blocks)
        if int(params["Fn_compute_blocks"]) + int(params["Bn_compute_blocks"]) >= blocks:
            raise AcceleratorError(
                f"cache_dit Fn_compute_blocks + Bn_compute_blocks = {int(params['Fn_compute_blocks']) + int(params['Bn_compute_blocks'])}"
                f" leaves none of the {blocks} transformer blocks to cache")
        return _Applied(pipe, params)
