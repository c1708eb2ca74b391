"""BaseConfig: one unaccelerated configuration (pipeline × scheduler × steps × shape × dtype).

Every speed-up is relative to a BaseConfig measured without acceleration in the same environment.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from search_space.keys import canonical_json

Weights = Literal["pretrained", "random"]
DTYPES = ("float32", "float16", "bfloat16")


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

    @classmethod
    def from_key(cls, key: str) -> BaseConfig:
        import json

        return cls(**json.loads(key))
