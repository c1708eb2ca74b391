"""Token Merging for Stable Diffusion (Bolya & Hoffman, 2023) through the ``tomesd`` package.

Merges redundant tokens before self-attention in the transformer blocks whose downsampling level is at
most ``max_downsample``; blocks at deeper levels are patched by tomesd but merge nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from search_space.catalogue import ParamSpec
from search_space.setting import ParamValue
from sweep.accelerators.base import Accelerator, AppliedAccelerator
from sweep.errors import AcceleratorError

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline


def _transformer_blocks(module: torch.nn.Module) -> int:
    return sum(1 for m in module.modules() if any(c.__name__ == "BasicTransformerBlock" for c in type(m).__mro__))


def merging_blocks(unet: torch.nn.Module, max_downsample: int) -> int:
    """How many transformer blocks run at a downsampling factor ≤ ``max_downsample`` (those ToMe really changes)."""
    levels = len(unet.down_blocks)  # type: ignore[attr-defined]
    count = 0
    for i, block in enumerate(unet.down_blocks):  # type: ignore[attr-defined]
        count += _transformer_blocks(block) if 2**i <= max_downsample else 0
    if unet.mid_block is not None and 2 ** (levels - 1) <= max_downsample:  # type: ignore[attr-defined]
        count += _transformer_blocks(unet.mid_block)  # type: ignore[attr-defined]
    for j, block in enumerate(unet.up_blocks):  # type: ignore[attr-defined]
        count += _transformer_blocks(block) if 2 ** (levels - 1 - j) <= max_downsample else 0
    return count


class _Applied(AppliedAccelerator):
    def __init__(self, pipe: DiffusionPipeline, params: Mapping[str, ParamValue], patched: int) -> None:
        import tomesd

        self._pipe = pipe
        tomesd.apply_patch(
            pipe,
            ratio=float(params["ratio"]),
            max_downsample=int(params["max_downsample"]),
            sx=int(params["sx"]),
            sy=int(params["sy"]),
            use_rand=bool(params["use_rand"]),
            merge_attn=bool(params["merge_attn"]),
            merge_crossattn=bool(params["merge_crossattn"]),
            merge_mlp=bool(params["merge_mlp"]),
        )
        self.patched = patched

    def remove(self) -> None:
        import tomesd

        tomesd.remove_patch(self._pipe)
        for module in self._pipe.unet.modules():
            module.__dict__.pop("_tome_info", None)


class ToMe(Accelerator):
    name: ClassVar[str] = "tome"
    description: ClassVar[str] = "Token Merging: merge redundant tokens before the UNet's attention blocks"
    denoisers: ClassVar[frozenset[str]] = frozenset({"unet"})
    packages: ClassVar[tuple[str, ...]] = ("tomesd",)
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("ratio", float, 0.5, minimum=0.0, maximum=0.75, help="fraction of tokens merged", primary=True,
                  aggressive=+1),
        ParamSpec("max_downsample", int, 1, choices=(1, 2, 4, 8), help="deepest level merged (1 = full resolution)",
                  primary=True, aggressive=+1),
        ParamSpec("sx", int, 2, minimum=1, maximum=8),
        ParamSpec("sy", int, 2, minimum=1, maximum=8),
        ParamSpec("use_rand", bool, True),
        ParamSpec("merge_attn", bool, True, aggressive=+1),
        ParamSpec("merge_crossattn", bool, False, aggressive=+1),
        ParamSpec("merge_mlp", bool, False, aggressive=+1),
    )

    @classmethod
    def step_forms(cls, params: Mapping[str, ParamValue], steps: int) -> dict[str, float] | None:
        """Every step merged the same way: one event per step, named by the whole setting (a new ratio is a new
        cost until it is measured once)."""
        return {f"tome({', '.join(f'{k}={params[k]}' for k in sorted(params))})": float(steps)}

    def supports(self, pipe: DiffusionPipeline) -> str | None:
        unet = getattr(pipe, "unet", None)
        if unet is None or not hasattr(unet, "down_blocks"):
            return "tomesd patches UNet transformer blocks; this pipeline has no UNet"
        if _transformer_blocks(unet) == 0:
            return "this UNet has no transformer blocks for ToMe to patch"
        return None

    def _patch(
        self, pipe: DiffusionPipeline, params: Mapping[str, ParamValue], absorbed: Mapping[str, Mapping[str, ParamValue]],
    ) -> AppliedAccelerator:
        max_downsample = int(params["max_downsample"])
        patched = merging_blocks(pipe.unet, max_downsample)
        if patched == 0:
            raise AcceleratorError(
                f"tome max_downsample={max_downsample} merges tokens in no block of this UNet "
                "(no attention at those resolutions): it would change nothing"
            )
        return _Applied(pipe, params, patched)
