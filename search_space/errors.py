"""The base of every error a user can cause and fix, and the space file's own error.

It lives in the bottom layer so that storage/ and sweep/ can both raise user errors without importing each
other; the CLI turns any SweepError into one line and its exit code.
"""

from __future__ import annotations


class SweepError(Exception):
    """Base class of errors a user can cause and fix."""

    exit_code = 2


class SpaceError(SweepError):
    """A search-space file is missing, unreadable or declares something invalid."""
