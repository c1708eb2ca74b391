"""Prompt sources: the set bundled with sweep, or a local text file (one prompt per line)."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from search_space.keys import canonical_json
from sweep.errors import PromptError

BUNDLED = "bundled"


def _parse_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def load_prompts(source: str, count: int) -> list[str]:
    """The first ``count`` prompts of ``source`` (``bundled`` or a path to a .txt file)."""
    if source == BUNDLED:
        prompts = _parse_lines((resources.files("sweep") / "data" / "prompts.txt").read_text(encoding="utf-8"))
    else:
        path = Path(source).expanduser()
        try:
            prompts = _parse_lines(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PromptError(f"{source}: no such prompt file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PromptError(f"{source}: cannot read prompts ({exc.__class__.__name__})") from None
    if len(prompts) < count:
        raise PromptError(f"{source}: {count} prompts requested, only {len(prompts)} available")
    return prompts[:count]


def prompts_sha256(prompts: list[str]) -> str:
    return hashlib.sha256(canonical_json(prompts).encode("utf-8")).hexdigest()
