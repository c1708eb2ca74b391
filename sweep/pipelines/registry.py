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
    resolution: tuple[int, int] = (512, 512)
    """Native (height, width): the default when a space gives no resolutions."""
    weights: tuple[str, ...] = ("pretrained", "random")
    """The first is the default. Tiny aliases default to random; "pretrained" then needs ``model``, a local folder
    (tests save a tiny pipeline with ``save_pretrained`` to exercise the quality pass offline)."""
    description: str = ""

    @property
    def call_options(self) -> dict[str, object]:
        """Arguments every generation passes. PixArt pipelines snap the requested size to their aspect-ratio bins
        by default (and refuse sizes outside them): sweep generates exactly the configured size. They also clean
        captions with regular expressions (and BeautifulSoup, warning on every call when it is missing): text
        preprocessing is not diffusion, and a warning must not be logged inside a timed generation."""
        if self.pipeline_class.startswith("PixArt"):
            return {"use_resolution_binning": False, "clean_caption": False}
        return {}

    @property
    def config_dir(self) -> Path:
        return Path(str(resources.files("sweep.pipelines") / "configs" / self.config_name))


PIPELINES: dict[str, PipelineInfo] = {
    info.alias: info
    for info in (
        PipelineInfo(
            "SD1.5", "StableDiffusionPipeline", "stable-diffusion-v1-5/stable-diffusion-v1-5", "unet", "sd15",
            (512, 512), description="Stable Diffusion 1.5: 860M UNet, CLIP ViT-L/14 text encoder",
        ),
        PipelineInfo(
            "SD2.1", "StableDiffusionPipeline", "stabilityai/stable-diffusion-2-1", "unet", "sd21",
            (768, 768), description="Stable Diffusion 2.1 (768, v-prediction): 866M UNet, OpenCLIP ViT-H text encoder",
        ),
        PipelineInfo(
            "SDXL", "StableDiffusionXLPipeline", "stabilityai/stable-diffusion-xl-base-1.0", "unet", "sdxl",
            (1024, 1024), description="SDXL base 1.0: 2.6B UNet, CLIP ViT-L + OpenCLIP ViT-bigG text encoders",
        ),
        PipelineInfo(
            "PixArt-α", "PixArtAlphaPipeline", "PixArt-alpha/PixArt-XL-2-1024-MS", "transformer", "pixart-alpha",
            (1024, 1024), description="PixArt-α XL-2 1024: 611M DiT, T5-XXL text encoder",
        ),
        PipelineInfo(
            "PixArt-Σ", "PixArtSigmaPipeline", "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS", "transformer",
            "pixart-sigma", (1024, 1024), description="PixArt-Σ XL-2 1024: 611M DiT, T5-XXL text encoder, SDXL VAE",
        ),
        PipelineInfo(
            "tiny-sd-a", "StableDiffusionPipeline", "builtin:tiny-sd-a", "unet", "tiny-sd-a", (64, 64), ("random", "pretrained"),
            "2-level SD-style UNet, 64×64 images, attention at full resolution (tests and demos)",
        ),
        PipelineInfo(
            "tiny-sd-b", "StableDiffusionPipeline", "builtin:tiny-sd-b", "unet", "tiny-sd-b", (64, 64), ("random", "pretrained"),
            "3-level SD-style UNet, 2 layers per block, attention at two resolutions (tests and demos)",
        ),
        PipelineInfo(
            "tiny-pixart", "PixArtAlphaPipeline", "builtin:tiny-pixart", "transformer", "tiny-pixart", (64, 64),
            ("random", "pretrained"), "4-layer PixArt-style DiT with a 2-layer T5 encoder, 64×64 images (tests and demos)",
        ),
    )
}

# ASCII spellings accepted in space files and on the command line.
SYNONYMS = {"PixArt-alpha": "PixArt-α", "PixArt-sigma": "PixArt-Σ", "PixArt-Alpha": "PixArt-α", "PixArt-Sigma": "PixArt-Σ"}


def canonical_alias(alias: str) -> str:
    return SYNONYMS.get(alias, alias)
