"""Generate a protocol's images with one pipeline and time the generation alone.

Time is wall-clock seconds around each batch (synchronised on CUDA), warm-up batches excluded; scoring and
storage happen outside the timed region.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from search_space.base_config import BaseConfig
from sweep.protocol import Protocol

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
    from PIL.Image import Image


@dataclass(frozen=True)
class Generation:
    images: list[Image]
    digests: list[str]
    """SHA-256 of each image's pixels: equal digests mean the accelerator changed nothing."""
    batch_seconds: list[float]
    batch_sizes: list[int]

    @property
    def seconds_per_image(self) -> float:
        return sum(self.batch_seconds) / sum(self.batch_sizes)

    @property
    def spread(self) -> float:
        """Standard deviation of seconds per image across batches (0 with a single batch)."""
        per_image = [s / n for s, n in zip(self.batch_seconds, self.batch_sizes, strict=True)]
        return statistics.stdev(per_image) if len(per_image) > 1 else 0.0


def _synchronize(device: str) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _run_batch(
    pipe: DiffusionPipeline, base: BaseConfig, prompts: list[str], seeds: list[int], device: str
) -> list[Image]:
    import torch

    generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
    return pipe(
        prompts, num_inference_steps=base.steps, height=base.height, width=base.width, generator=generators,
        output_type="pil",
    ).images


def generate(pipe: DiffusionPipeline, base: BaseConfig, protocol: Protocol, device: str) -> Generation:
    import torch

    prompts = list(protocol.prompts)
    seeds = [protocol.seed + i for i in range(len(prompts))]
    batches = [(prompts[i : i + base.batch_size], seeds[i : i + base.batch_size]) for i in range(0, len(prompts), base.batch_size)]
    # Accelerators that draw random numbers (tomesd's token matching) fork the global RNG on first use.
    torch.manual_seed(protocol.seed)
    for _ in range(protocol.warmup_batches):
        _run_batch(pipe, base, *batches[0], device)
    images: list[Image] = []
    seconds: list[float] = []
    for batch_prompts, batch_seeds in batches:
        _synchronize(device)
        start = time.perf_counter()
        images.extend(_run_batch(pipe, base, batch_prompts, batch_seeds, device))
        _synchronize(device)
        seconds.append(time.perf_counter() - start)
    digests = [hashlib.sha256(np.asarray(image).tobytes()).hexdigest() for image in images]
    return Generation(images, digests, seconds, [len(p) for p, _ in batches])
