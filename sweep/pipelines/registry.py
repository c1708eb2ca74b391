"""Pipeline aliases: what a space file may name, with the diffusers class and default model reference.

Kept free of heavy imports so that reading a space file does not load torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class PipelineInfo:
    alias: str
    pipeline_class: str
    default_model: str
    """Hub id, or ``builtin:NAME`` for an architecture that exists only as shipped configs."""
    denoiser: Literal["unet", "transformer"]
    config_name: str
    """Folder under ``sweep/pipelines/configs`` holding the architecture's component configs."""
    weights: tuple[str, ...] = ("pretrained", "random")
    description: str = ""

    @property
    def config_dir(self) -> Path:
        return Path(str(resources.files("sweep.pipelines") / "configs" / self.config_name))


PIPELINES: dict[str, PipelineInfo] = {
    info.alias: info
    for info in (
        PipelineInfo(
            "tiny-sd-a", "StableDiffusionPipeline", "builtin:tiny-sd-a", "unet", "tiny-sd-a", ("random",),
            "2-level SD-style UNet, 64×64 images, attention at full resolution (tests and demos)",
        ),
        PipelineInfo(
            "tiny-sd-b", "StableDiffusionPipeline", "builtin:tiny-sd-b", "unet", "tiny-sd-b", ("random",),
            "3-level SD-style UNet, 2 layers per block, attention at two resolutions (tests and demos)",
        ),
    )
}
