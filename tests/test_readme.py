"""The README's numbers come from search_space/defaults.py: a default changed in one place shows here."""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict
from pathlib import Path

from search_space import defaults
from search_space.spec import ProtocolSpec

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _percent(value: float) -> str:
    return f"{100 * value:g}%"


def test_the_space_file_example_declares_the_default_protocol() -> None:
    block = README.split("## Space files", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    declared = tomllib.loads(block)["protocol"]
    assert declared == asdict(ProtocolSpec())  # every key, with its default value


def test_the_defaults_the_prose_names() -> None:
    assert f"threshold (default {_percent(defaults.MAX_LOSS)})" in README
    assert f"to a {_percent(defaults.CONFIDENCE)} CI of ±{_percent(defaults.TARGET_HALF_WIDTH)}" in README
    assert f"the first {defaults.TIMING_PROMPTS} prompts" in README
    confidences = set(re.findall(r"(\d+)% (?:confidence|interval|CI|t-interval)", README))
    assert confidences == {f"{100 * defaults.CONFIDENCE:g}"}
