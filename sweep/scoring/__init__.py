"""Scorers: images + prompts → per-image scores."""

from sweep.scoring.base import Scorer

__all__ = ["Scorer"]
