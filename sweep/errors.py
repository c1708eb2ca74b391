"""User-facing errors: the CLI turns each into one clear line and a non-zero exit code.

Anything that is not a SweepError is a bug and may show a traceback.
"""

from __future__ import annotations


class SweepError(Exception):
    """Base class of errors a user can cause and fix."""

    exit_code = 2


class SpaceError(SweepError):
    """A search-space file is missing, unreadable or declares something invalid."""


class StorageError(SweepError):
    """The database cannot be reached, is not a sweep database, or the URL is malformed."""


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
