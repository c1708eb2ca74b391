"""DeepCache (Ma et al., 2023) through the ``DeepCache`` package's ``DeepCacheSDHelper``.

Caches the UNet's deep features and recomputes only the shallow branch ``cache_branch_id`` on the
``cache_interval - 1`` steps between full steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from search_space.catalogue import ParamSpec
from search_space.setting import ParamValue
from sweep.accelerators.base import Accelerator, AppliedAccelerator
from sweep.errors import AcceleratorError

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline


def valid_branch_ids(unet: object) -> list[int]:
    """Branch ids DeepCache can cache at: block b, layer l ↦ 3b + l; layer l < resnets (+1 for a downsampler)."""
    ids: list[int] = []
    for block_i, block in enumerate(unet.down_blocks):  # type: ignore[attr-defined]
        layers = len(getattr(block, "resnets", [])) + (1 if getattr(block, "downsamplers", None) else 0)
        ids.extend(3 * block_i + layer for layer in range(min(layers, 3)))
    return ids


class _Applied(AppliedAccelerator):
    def __init__(self, pipe: DiffusionPipeline, interval: int, branch: int) -> None:
        from DeepCache import DeepCacheSDHelper

        unet = pipe.unet
        # DeepCache restores by assigning bound methods as instance attributes; remember which modules had
        # none so remove() leaves the modules exactly as they were.
        self._had_forward = {id(m) for m in unet.modules() if "forward" in m.__dict__}
        self._unet = unet
        self._helper = DeepCacheSDHelper(pipe=pipe)
        self._helper.set_params(cache_interval=interval, cache_branch_id=branch)
        self._helper.enable()
        self.patched = len(self._helper.function_dict) - 1  # minus the UNet's own forward

    def remove(self) -> None:
        self._helper.disable()
        for module in self._unet.modules():
            if id(module) not in self._had_forward:
                module.__dict__.pop("forward", None)


class DeepCache(Accelerator):
    name: ClassVar[str] = "deepcache"
    description: ClassVar[str] = "DeepCache: reuse the UNet's deep features, recompute a shallow branch in between"
    denoisers: ClassVar[frozenset[str]] = frozenset({"unet"})
    packages: ClassVar[tuple[str, ...]] = ("DeepCache",)
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("cache_interval", int, 3, minimum=1, maximum=1000, help="full UNet step every N steps", primary=True,
                  aggressive=+1),
        ParamSpec("cache_branch_id", int, 0, minimum=0, maximum=99, help="shallow branch kept live (3·block + layer)",
                  primary=True, aggressive=-1),  # a deeper live branch recomputes more of the UNet
    )

    @classmethod
    def step_forms(cls, params: Mapping[str, ParamValue], steps: int) -> dict[str, float] | None:
        """DeepCacheSDHelper's uniform schedule: a full step where ``step % interval == 0``, else the branch only."""
        interval = int(params["cache_interval"])
        full = -(-steps // interval)
        return {f"deepcache.partial.b{int(params['cache_branch_id'])}": float(steps - full)}

    def supports(self, pipe: DiffusionPipeline) -> str | None:
        unet = getattr(pipe, "unet", None)
        if unet is None or not hasattr(unet, "down_blocks"):
            return "DeepCache needs a UNet with down/up blocks; this pipeline has none"
        return None

    def _patch(
        self, pipe: DiffusionPipeline, params: Mapping[str, ParamValue], absorbed: Mapping[str, Mapping[str, ParamValue]],
    ) -> AppliedAccelerator:
        check_branch(pipe, params)
        return _Applied(pipe, int(params["cache_interval"]), int(params["cache_branch_id"]))


def check_branch(pipe: DiffusionPipeline, params: Mapping[str, ParamValue]) -> None:
    branch = int(params["cache_branch_id"])
    valid = valid_branch_ids(pipe.unet)
    if branch not in valid:
        raise AcceleratorError(
            f"deepcache cache_branch_id={branch} does not exist in this UNet; valid: {', '.join(map(str, valid))}"
        )
