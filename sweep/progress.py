"""Progress reporting that never runs during a timed generation.

A ProgressSink is told what happens between generations; nothing refreshes on its own (no timer thread), so
the measured pipeline shares the CPU with nothing else while it is timed.
"""

from __future__ import annotations

from typing import Protocol as TypingProtocol


class ProgressSink(TypingProtocol):
    def start(self, total: int) -> None: ...
    def retotal(self, total: int) -> None: ...
    def describe(self, text: str) -> None: ...
    def advance(self) -> None: ...
    def refresh(self) -> None:
        """Called after each generation, outside the timed region."""


class NoProgress:
    def start(self, total: int) -> None:
        pass

    def retotal(self, total: int) -> None:
        pass

    def describe(self, text: str) -> None:
        pass

    def advance(self) -> None:
        pass

    def refresh(self) -> None:
        pass
