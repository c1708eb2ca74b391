"""User-facing errors: the CLI turns each into one clear line and a non-zero exit code.

Anything that is not a SweepError is a bug and may show a traceback. The base class and SpaceError live in
search_space/ and StorageError in storage/, the layers that raise them; they are re-exported here.
"""

from __future__ import annotations

from search_space.errors import SpaceError, SweepError
from storage.errors import StorageError

__all__ = [
    "AcceleratorError", "ModelLoadError", "PromptError", "SpaceError", "StorageError", "SweepError", "UsageError",
]


class ModelLoadError(SweepError):
    """A pipeline or scorer cannot be loaded (offline and not cached, bad path...)."""


class PromptError(SweepError):
    """A prompt source cannot be read."""


class AcceleratorError(SweepError):
    """An accelerator cannot be applied to a pipeline, or applying it changed nothing.

    Raised during a trial, it is stored with the trial as its failure reason rather than aborting the run.
    """


class UsageError(SweepError):
    """An option value is outside its valid range."""
