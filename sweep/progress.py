"""Progress reporting that never runs during a timed generation.

A ProgressSink is told when a measurement starts (describe) and ends (advance). Nothing redraws on its own (no
timer thread), and nothing redraws between the generations of a measurement: drawing a bar costs the CPU that a
batch-1 pipeline on a fast GPU is bound by, and on an H100 a bar redrawn after every generation slowed the next
one by 4 to 7% (docs/measurements/2026-11-26-h100-measurement.md). Every measurement starts with an untimed
warm-up run, which absorbs whatever the redraw before it costs.
"""

from __future__ import annotations

from typing import Protocol as TypingProtocol

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ProgressSink(TypingProtocol):
    def start(self, total: int) -> None: ...
    def retotal(self, total: int) -> None: ...
    def describe(self, text: str) -> None: ...
    def advance(self) -> None: ...


class NoProgress:
    def start(self, total: int) -> None:
        pass

    def retotal(self, total: int) -> None:
        pass

    def describe(self, text: str) -> None:
        pass

    def advance(self) -> None:
        pass


class RichProgress:
    """A rich progress bar redrawn only when a measurement starts or ends."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("preparing", total=None)

    def start(self, total: int) -> None:
        self._progress.update(self._task, total=total)
        self.refresh()

    def describe(self, text: str) -> None:
        self._progress.update(self._task, description=text)
        self.refresh()

    def retotal(self, total: int) -> None:
        self._progress.update(self._task, total=total)
        self.refresh()

    def advance(self) -> None:
        self._progress.advance(self._task)
        self.refresh()

    def refresh(self) -> None:
        self._progress.refresh()


PROGRESS_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn())


