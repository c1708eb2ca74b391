"""Pyramid Attention Broadcast (Zhao et al., 2024) through diffusers' own hook
(``diffusers.apply_pyramid_attention_broadcast``), applied directly to PixArt's transformer: inside a range of
timesteps, self-attention (and optionally cross-attention) is computed once every N steps and broadcast to the
steps between.

PixArt pipelines do not expose the current timestep the hook needs, so a forward pre-hook on the transformer
reads it from the ``timestep`` argument once per step (one small device-to-host copy per step, inside the
timed generation, part of what the method costs). ``remove`` deletes the hooks diffusers registered and the
attributes they added, giving back the unpatched transformer.
"""

from __future__ import annotations

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
from sweep.errors import AcceleratorError

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

HOOK = "pyramid_attention_broadcast"


class _Applied(AppliedAccelerator):
    def __init__(self, pipe: DiffusionPipeline, params: Mapping[str, ParamValue]) -> None:
        from diffusers import PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast

        transformer = pipe.transformer
        self._modules = list(transformer.modules())
        self._before = snapshot(self._modules)
        self._timestep = TimestepReader(transformer)
        window = (int(params["timestep_low"]), int(params["timestep_high"]))
        cross = int(params["cross_skip"])
        config = PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=int(params["spatial_skip"]), spatial_attention_timestep_skip_range=window,
            cross_attention_block_skip_range=cross or None, cross_attention_timestep_skip_range=window,
            current_timestep_callback=self._timestep,
        )
        apply_pyramid_attention_broadcast(transformer, config)
        self._transformer = transformer
        self.patched = sum(1 for m in self._modules if HOOK in getattr(getattr(m, "_diffusers_hook", None), "hooks", {}))

    def remove(self) -> None:
        self._timestep.remove()
        remove_diffusers_hooks(self._transformer, [HOOK])
        restore_instance_attributes(self._modules, self._before)  # the registries and the forwards they wrapped


class PyramidAttentionBroadcast(Accelerator):
    name: ClassVar[str] = "pab"
    description: ClassVar[str] = ("Pyramid Attention Broadcast (diffusers hook): compute attention once every N "
                                  "steps inside a timestep window, reuse it in between")
    denoisers: ClassVar[frozenset[str]] = frozenset({"transformer"})
    pipeline_classes: ClassVar[frozenset[str] | None] = frozenset({"PixArtAlphaPipeline", "PixArtSigmaPipeline"})
    packages: ClassVar[tuple[str, ...]] = ("diffusers",)
    excludes: ClassVar[frozenset[str]] = frozenset({"tgate", "cache_dit", "fastercache"})  # all rewrite attention
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("spatial_skip", int, 2, minimum=2, maximum=100,
                  help="self-attention computed every N steps inside the window", primary=True, aggressive=+1),
        ParamSpec("cross_skip", int, 0, minimum=0, maximum=100,
                  help="cross-attention computed every N steps inside the window (0: always)", aggressive=+1),
        ParamSpec("timestep_low", int, 100, minimum=0, maximum=1000, help="window start (timestep)", aggressive=-1),
        ParamSpec("timestep_high", int, 800, minimum=0, maximum=1000, help="window end (timestep)", aggressive=+1),
    )

    def _patch(
        self, pipe: DiffusionPipeline, params: Mapping[str, ParamValue], absorbed: Mapping[str, Mapping[str, ParamValue]],
    ) -> AppliedAccelerator:
        if int(params["cross_skip"]) == 1:
            raise AcceleratorError("pab cross_skip=1 computes cross-attention every step: use 0 (off) or 2 and more")
        if int(params["timestep_low"]) >= int(params["timestep_high"]):
            raise AcceleratorError(f"pab timestep window ({params['timestep_low']}, {params['timestep_high']}) is empty")
        return _Applied(pipe, params)
