"""Generate a protocol's images and time generation alone, baseline and accelerated runs interleaved.

Timing uses CUDA events on a GPU (wall clock on a CPU) around each batch; loading, patching, scoring and
storage happen outside the timed region.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from search_space.base_config import BaseConfig
from sweep.protocol import Protocol
from sweep.stats import Paired, TimingPolicy, measure_paired, warm_up

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
    from PIL.Image import Image


def digest(image: Image) -> str:
    """SHA-256 of an image's pixels: equal digests mean the accelerator changed nothing."""
    return hashlib.sha256(np.asarray(image).tobytes()).hexdigest()


@dataclass
class Generator:
    """Runs one prompt batch of the protocol through a pipeline and times it."""

    pipe: DiffusionPipeline
    base: BaseConfig
    protocol: Protocol
    device: str
    generation_seconds: float = 0.0
    """Every timed generation so far, warm-up included: the denominator of the overhead ratio."""
    batches: list[tuple[list[str], list[int]]] = field(init=False)

    def __post_init__(self) -> None:
        prompts = list(self.protocol.prompts)
        seeds = [self.protocol.seed + i for i in range(len(prompts))]
        size = self.base.batch_size
        self.batches = [(prompts[i : i + size], seeds[i : i + size]) for i in range(0, len(prompts), size)]

    def run(self, batch: int) -> tuple[float, list[Image]]:
        import torch

        prompts, seeds = self.batches[batch]
        # Image i always starts from seed + i; accelerators that draw random numbers (tomesd's token
        # matching forks the global RNG) get the same stream for the same batch in every run.
        torch.manual_seed(seeds[0])
        generators = [torch.Generator(device=self.device).manual_seed(seed) for seed in seeds]
        cuda = torch.device(self.device).type == "cuda"
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(self.device)
            start.record()
        else:
            began = time.perf_counter()
        images = self.pipe(
            prompts, num_inference_steps=self.base.steps, height=self.base.height, width=self.base.width,
            generator=generators, output_type="pil",
        ).images
        if cuda:
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1000
        else:
            seconds = time.perf_counter() - began
        self.generation_seconds += seconds
        return seconds, images

    def per_image(self, batch: int, seconds: float) -> float:
        return seconds / len(self.batches[batch][0])


def mean_abs_deviation(first: list[Image], second: list[Image]) -> float:
    """Mean absolute pixel difference between two runs' images, as a fraction of the 0-255 range."""
    total = sum(float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())
                for a, b in zip(first, second, strict=True))
    return total / len(first) / 255.0


def max_pixel_difference(first: list[Image], second: list[Image]) -> int:
    """Largest absolute difference of any pixel channel between two runs' images (0 to 255)."""
    return max(
        int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max()) for a, b in zip(first, second, strict=True)
    )


@dataclass(frozen=True)
class BaselineRun:
    seconds_per_image: float
    spread: float
    images: list[Image]
    digests: list[str]
    warmup_runs: int
    repeat_max_pixel_diff: int
    """The same batch, prompts and seeds generated twice (last warm-up run and the measured pass): 0 when the
    backend generates bit-identical images, else how far apart they came out."""

    @property
    def deterministic(self) -> bool:
        return self.repeat_max_pixel_diff == 0


def measure_baseline(gen: Generator, policy: TimingPolicy) -> BaselineRun:
    """Warm up until stable, then one pass over every batch: the images and time of the baseline."""
    warm_images: list[Image] = []

    def warm_run() -> float:
        seconds, images = gen.run(0)
        warm_images[:] = images
        return seconds

    warm = warm_up(warm_run, policy.warmup_tolerance, policy.warmup_cap)
    per_image: list[float] = []
    images: list[Image] = []
    for batch in range(len(gen.batches)):
        seconds, batch_images = gen.run(batch)
        per_image.append(gen.per_image(batch, seconds))
        images.extend(batch_images)
    spread = statistics.stdev(per_image) if len(per_image) > 1 else 0.0
    repeat_diff = max_pixel_difference(warm_images, images[: len(warm_images)])
    return BaselineRun(
        statistics.fmean(per_image), spread, images, [digest(i) for i in images], len(warm.seconds), repeat_diff
    )


@dataclass(frozen=True)
class PairedRun:
    paired: Paired
    """Per-image seconds of the baseline (A) and accelerated (B) runs, pair by pair."""
    images: list[Image]
    """The accelerated images of every prompt, from the first pass."""
    digests: list[str]
    warmup_runs: int
    baseline_images: list[Image]
    """The baseline's images of every prompt, generated in this same paired run."""

    @property
    def image_deviation(self) -> float:
        """How far acceleration moved the images: mean |accelerated - baseline| pixel difference (0 to 1)."""
        return mean_abs_deviation(self.images, self.baseline_images)

    @property
    def seconds_per_image(self) -> float:
        return statistics.fmean(self.paired.accelerated_seconds)

    @property
    def baseline_seconds_per_image(self) -> float:
        return statistics.fmean(self.paired.baseline_seconds)


def measure_against_baseline(
    gen: Generator, accelerate: Callable[[], None], restore: Callable[[], None], policy: TimingPolicy
) -> PairedRun:
    """Warm up the accelerated pipeline, then time baseline and accelerated runs of each batch back to back.

    ``accelerate`` and ``restore`` switch the pipeline between the two; they run outside the timed region.
    Returns with the pipeline restored.
    """
    images: dict[int, list[Image]] = {}
    baseline_images: dict[int, list[Image]] = {}

    def baseline(batch: int) -> float:
        restore()
        seconds, batch_images = gen.run(batch)
        baseline_images.setdefault(batch, batch_images)
        return gen.per_image(batch, seconds)

    def accelerated(batch: int) -> float:
        accelerate()
        seconds, batch_images = gen.run(batch)
        images.setdefault(batch, batch_images)
        return gen.per_image(batch, seconds)

    try:
        accelerate()
        warm = warm_up(lambda: gen.run(0)[0], policy.warmup_tolerance, policy.warmup_cap)
        paired = measure_paired(baseline, accelerated, len(gen.batches), policy)
    finally:
        restore()
    ordered = [image for batch in range(len(gen.batches)) for image in images[batch]]
    base_ordered = [image for batch in range(len(gen.batches)) for image in baseline_images[batch]]
    return PairedRun(paired, ordered, [digest(i) for i in ordered], len(warm.seconds), base_ordered)
