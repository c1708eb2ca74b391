"""FasterCache (Lv et al., 2024) through diffusers' own hook (``diffusers.apply_faster_cache``), applied directly
to PixArt's transformer: attention outputs are reused every N steps inside a timestep window, corrected by their
low- and high-frequency trend, and the unconditional half of the guidance batch is skipped every M steps
(reconstructed from the conditional one).

Like PAB it needs the current timestep, read by a pre-hook on the transformer once per step; ``remove`` deletes
the hooks diffusers registered and the attributes they added. diffusers marks FasterCache experimental.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from search_space.catalogue import ParamSpec
from search_space.setting import ParamValue
from sweep.accelerators.base import (
    Accelerator,
    AppliedAccelerator,
    TimestepReader,
    remove_diffusers_hooks,
    restore_instance_attributes,
    snapshot,
)

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

HOOKS = ("faster_cache_denoiser", "faster_cache_block")


class _Applied(AppliedAccelerator):
    def __init__(self, pipe: DiffusionPipeline, params: Mapping[str, ParamValue]) -> None:
        from diffusers import FasterCacheConfig, apply_faster_cache

        transformer = pipe.transformer
        self._transformer = transformer
        self._modules = list(transformer.modules())
        self._before = snapshot(self._modules)
        self._timestep = TimestepReader(transformer)
        weight = float(params["attention_weight"])
        config = FasterCacheConfig(
            spatial_attention_block_skip_range=int(params["spatial_skip"]),
            unconditional_batch_skip_range=int(params["uncond_skip"]),
            current_timestep_callback=self._timestep, attention_weight_callback=lambda _module: weight,
            tensor_format="BCHW", is_guidance_distilled=False,
        )
        with warnings.catch_warnings():  # "purely experimental" is said once here, in the module docstring
            warnings.simplefilter("ignore")
            apply_faster_cache(transformer, config)
        self.patched = sum(1 for m in self._modules if getattr(m, "_diffusers_hook", None) is not None
                           and any(h in m._diffusers_hook.hooks for h in HOOKS))

    def remove(self) -> None:
        self._timestep.remove()
        remove_diffusers_hooks(self._transformer, HOOKS)
        restore_instance_attributes(self._modules, self._before)


class FasterCache(Accelerator):
    name: ClassVar[str] = "fastercache"
    description: ClassVar[str] = ("FasterCache (diffusers hook, experimental): reuse attention every N steps with a "
                                  "frequency correction, skip the unconditional batch every M steps")
    denoisers: ClassVar[frozenset[str]] = frozenset({"transformer"})
    pipeline_classes: ClassVar[frozenset[str] | None] = frozenset({"PixArtAlphaPipeline", "PixArtSigmaPipeline"})
    packages: ClassVar[tuple[str, ...]] = ("diffusers",)
    excludes: ClassVar[frozenset[str]] = frozenset({"tgate", "cache_dit", "pab"})  # all rewrite the attention path
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("spatial_skip", int, 2, minimum=2, maximum=100, help="attention computed every N steps in its window",
                  primary=True, aggressive=+1),
        ParamSpec("uncond_skip", int, 5, minimum=2, maximum=100,
                  help="unconditional batch computed every N steps in its window", primary=True, aggressive=+1),
        ParamSpec("attention_weight", float, 0.3, minimum=0.0, maximum=1.0,
                  help="weight of the extrapolated attention trend"),
    )

    def _patch(
        self, pipe: DiffusionPipeline, params: Mapping[str, ParamValue], absorbed: Mapping[str, Mapping[str, ParamValue]],
    ) -> AppliedAccelerator:
        return _Applied(pipe, params)
