"""Canonical text keys for base configurations and acceleration settings.

A key is the identity of a measurement in storage, so one function produces every key and its text must
never change meaning between versions (tests/test_keys.py pins examples).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

JSONScalar = str | int | float | bool | None
JSONValue = JSONScalar | list["JSONValue"] | Mapping[str, "JSONValue"]


def canonical_json(value: JSONValue) -> str:
    """Compact JSON with sorted keys; NaN and infinities are refused (they have no stable text)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
