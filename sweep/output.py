"""Shared output formats for CLI commands: a rich table for people, JSON for tools."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from enum import Enum

from rich.console import Console
from rich.table import Table


class Format(str, Enum):
    table = "table"
    json = "json"


Column = tuple[str, Callable[[dict[str, object]], str]]
TABLE_WIDTH = 120
"""Tables printed to a pipe or file fit this many columns; full detail stays in --format json."""


def emit(
    rows: Sequence[dict[str, object]], fmt: Format, columns: Sequence[Column], *, title: str = "",
    caption: str = "", console: Console | None = None,
) -> None:
    # Piped output (files, CI logs) gets the width of a normal terminal; cells wrap inside their columns.
    console = console or (Console() if sys.stdout.isatty() else Console(width=TABLE_WIDTH))
    if fmt is Format.json:
        console.print_json(json.dumps(list(rows)), indent=2) if rows else print("[]")
        return
    table = Table(title=title or None, caption=caption or None, caption_justify="left")
    for header, _ in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(*(cell(row) for _, cell in columns))
    console.print(table)


def settings_text(settings: object) -> str:
    """Short text of a settings object: primary and non-default parameters of each accelerator."""
    from sweep.accelerators import ACCELERATORS

    if not isinstance(settings, dict) or not settings:
        return "baseline"
    parts = []
    for name, params in settings.items():
        cls = ACCELERATORS.get(name)
        parts.append(cls.short(params) if cls else f"{name}({params})")
    return " + ".join(parts)
