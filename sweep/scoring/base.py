"""The Scorer interface: generated images and their prompts → one score per image."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image


class Scorer(ABC):
    random_weights: bool
    """True when the scorer's weights are random: its scores then say nothing about image quality."""

    @abstractmethod
    def score(self, images: Sequence[Image], prompts: Sequence[str]) -> list[float]: ...
