"""The storage layer's user-facing error (unreachable database, wrong schema revision, malformed URL)."""

from __future__ import annotations

from search_space.errors import SweepError


class StorageError(SweepError):
    """The database cannot be reached, is not a sweep database, or the URL is malformed."""
