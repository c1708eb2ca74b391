"""BaseConfig: one unaccelerated configuration (pipeline × weights × scheduler × steps × shape × dtype × batch),
and SpeedConfig: the part of it a generation's speed depends on.

Quality depends on the whole BaseConfig (weights included); speed depends only on its SpeedConfig (the
architecture, shape, dtype, scheduler, steps and batch), so speed measured with random weights serves every
model of the same architecture.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from search_space.keys import canonical_json

Weights = Literal["pretrained", "random"]
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class SpeedConfig:
    """What a generation's speed depends on besides the machine: not the weights, not the prompts' words."""

    pipeline: str
    """Alias naming the architecture, such as ``SD1.5``."""
    scheduler: str
    steps: int
    height: int
    width: int
    dtype: str
    batch_size: int

    @property
    def key(self) -> str:
        return canonical_json(asdict(self))

    @property
    def label(self) -> str:
        return f"{self.pipeline} / {self.scheduler} / {self.steps} steps"


@dataclass(frozen=True)
class BaseConfig:
    pipeline: str
    """Alias such as ``SD1.5`` or ``tiny-sd-a``."""
    model: str
    """Model reference: hub id, local diffusers folder, single checkpoint file, or a built-in config name."""
    weights: Weights
    scheduler: str
    """diffusers scheduler class name, e.g. ``DDIMScheduler``."""
    steps: int
    height: int
    width: int
    dtype: str
    batch_size: int

    @property
    def key(self) -> str:
        return canonical_json(asdict(self))

    @property
    def label(self) -> str:
        return f"{self.pipeline} / {self.scheduler} / {self.steps} steps"

    @property
    def speed(self) -> SpeedConfig:
        return SpeedConfig(self.pipeline, self.scheduler, self.steps, self.height, self.width, self.dtype, self.batch_size)

    @classmethod
    def from_key(cls, key: str) -> BaseConfig:
        import json

        return cls(**json.loads(key))
