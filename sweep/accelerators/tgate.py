"""T-GATE (Liu et al., 2024) through the ``tgate`` package: cache self-attention on a schedule, stop computing
cross-attention (and classifier-free guidance) after ``gate_step`` steps.

Its loaders attach a ``pipe.tgate(...)`` method that generates in place of ``pipe(...)``; each call replaces
``forward`` on every diffusers ``Attention`` module and stores a ``.cache`` on it, and nothing in tgate undoes
that, so ``remove`` deletes those instance attributes (and the attached method) to give back the unpatched
pipeline, bit for bit. With DeepCache in the same setting, T-GATE's DeepCache loader runs both (it resets the
DeepCache helper at the gate step, where the batch halves).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from search_space.catalogue import ParamSpec
from search_space.setting import ParamValue
from sweep.accelerators.base import (
    Accelerator,
    AppliedAccelerator,
    restore_instance_attributes,
    snapshot,
)
from sweep.accelerators.deepcache import check_branch
from sweep.errors import AcceleratorError

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

# pipeline class → (loader, loader with DeepCache)
LOADERS = {
    "StableDiffusionPipeline": ("TgateSDLoader", "TgateSDDeepCacheLoader"),
    "StableDiffusionXLPipeline": ("TgateSDXLLoader", "TgateSDXLDeepCacheLoader"),
    "PixArtAlphaPipeline": ("TgatePixArtAlphaLoader", None),
    "PixArtSigmaPipeline": ("TgatePixArtSigmaLoader", None),
}


def _denoiser(pipe: DiffusionPipeline) -> Any:
    return getattr(pipe, "unet", None) or pipe.transformer


class _Applied(AppliedAccelerator):
    def __init__(self, pipe: DiffusionPipeline, params: Mapping[str, ParamValue],
                 deepcache: Mapping[str, ParamValue] | None) -> None:
        import tgate

        self._pipe = pipe
        # tgate patches modules whose class is named "Attention" (a forward and a cache on each); DeepCache the UNet
        self._modules = list(_denoiser(pipe).modules())
        self._before = snapshot(self._modules)
        loader, with_deepcache = LOADERS[type(pipe).__name__]
        if deepcache is not None:
            assert with_deepcache is not None
            getattr(tgate, with_deepcache)(pipe, cache_interval=int(deepcache["cache_interval"]),
                                           cache_branch_id=int(deepcache["cache_branch_id"]))
        else:
            getattr(tgate, loader)(pipe)
        gate = {k: int(params[k]) for k in ("gate_step", "sp_interval", "fi_interval", "warm_up")}
        tgate_call = pipe.tgate

        def generate(*args: Any, **kwargs: Any) -> Any:
            return tgate_call(*args, **kwargs, **gate)

        self.generate = generate
        self.patched = sum(1 for m in self._modules if type(m).__name__ == "Attention")

    def remove(self) -> None:
        pipe = self._pipe
        helper = pipe.__dict__.pop("deepcache", None)
        if helper is not None:
            helper.disable()
        restore_instance_attributes(self._modules, self._before)
        pipe.__dict__.pop("tgate", None)


class TGate(Accelerator):
    name: ClassVar[str] = "tgate"
    description: ClassVar[str] = ("T-GATE: cache self-attention on a schedule, stop cross-attention and guidance "
                                  "after gate_step steps")
    denoisers: ClassVar[frozenset[str]] = frozenset({"unet", "transformer"})
    pipeline_classes: ClassVar[frozenset[str] | None] = frozenset(LOADERS)
    packages: ClassVar[tuple[str, ...]] = ("tgate",)
    absorbs: ClassVar[frozenset[str]] = frozenset({"deepcache"})
    excludes: ClassVar[frozenset[str]] = frozenset({"tome", "cache_dit", "pab", "fastercache"})  # same attention path
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("gate_step", int, 10, minimum=1, maximum=1000, help="step after which cross-attention is cached",
                  primary=True, aggressive=-1),
        ParamSpec("sp_interval", int, 5, minimum=1, maximum=1000,
                  help="self-attention recomputed every N steps before the gate", primary=True, aggressive=+1),
        ParamSpec("fi_interval", int, 1, minimum=1, maximum=1000,
                  help="self-attention recomputed every N steps after the gate", aggressive=+1),
        ParamSpec("warm_up", int, 2, minimum=0, maximum=1000, help="first steps computed in full", aggressive=-1),
    )

    @classmethod
    def step_forms(cls, params: Mapping[str, ParamValue], steps: int) -> dict[str, float] | None:
        """tgate 1.0.0's schedule (``tgate_utils.tgate_scheduler``): before ``gate_step - 1`` self-attention is
        reused on steps past ``warm_up`` that are not multiples of ``sp_interval``; the gate step computes all;
        after it guidance stops (half the batch), cross-attention is reused, and self-attention is reused on
        steps that are not multiples of ``fi_interval``."""
        gate, sp, fi, warm = (int(params[k]) for k in ("gate_step", "sp_interval", "fi_interval", "warm_up"))
        before = [i for i in range(steps) if i < gate - 1]
        after = [i for i in range(steps) if i > gate - 1]
        return {
            "tgate.sa_reused": float(sum(1 for i in before if i > warm and i % sp != 0)),
            "tgate.after_gate": float(len(after)),
            "tgate.after_gate.sa_reused": float(sum(1 for i in after if i % fi != 0)),
        }

    def _patch(
        self, pipe: DiffusionPipeline, params: Mapping[str, ParamValue], absorbed: Mapping[str, Mapping[str, ParamValue]],
    ) -> AppliedAccelerator:
        deepcache = absorbed.get("deepcache")
        if deepcache is not None:
            if LOADERS[type(pipe).__name__][1] is None:
                raise AcceleratorError(f"tgate has no DeepCache loader for {type(pipe).__name__}")
            check_branch(pipe, deepcache)
        return _Applied(pipe, params, deepcache)
