"""Space files: expansion into keys, applicability notes, and one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from search_space import load_preset, load_space
from sweep.errors import SpaceError
from tests.conftest import SMALL_SPACE, write_space


def test_tiny_preset_expands_to_the_declared_grid() -> None:
    space = load_preset("tiny")
    assert len(space.entries) == 2 * 2 * 2  # pipelines × schedulers × steps
    for entry in space.entries:
        # (1 + 2 deepcache) × (1 + 2 tome) settings, the baseline first
        assert len(entry.settings) == 9
        assert entry.settings[0].is_baseline
        assert len({s.key for s in entry.settings}) == 9
    assert {e.base.pipeline for e in space.entries} == {"tiny-sd-a", "tiny-sd-b"}
    assert len({e.base.key for e in space.entries}) == 8


def test_combine_false_measures_each_accelerator_alone(tmp_path: Path) -> None:
    space = load_space(write_space(tmp_path, SMALL_SPACE.replace("combine = true", "combine = false")))
    (entry,) = space.entries
    names = [tuple(s.methods) for s in entry.settings]
    assert names == [(), ("deepcache",), ("deepcache",), ("tome",)]


def test_expansion_is_stable_across_reads(small_space: Path) -> None:
    first = [(e.base.key, [s.key for s in e.settings]) for e in load_space(small_space).entries]
    second = [(e.base.key, [s.key for s in e.settings]) for e in load_space(small_space).entries]
    assert first == second


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('"DDIMScheduler"', '"DDIMX"'), r"\[\[base\]\] #1: unknown scheduler 'DDIMX'; valid: .*DDIMScheduler.*UniPCMultistepScheduler"),
        (("cache_interval = [1, 2]", "cache_intervall = [1, 2]"), r"\[accelerators.deepcache\]: unknown key 'cache_intervall'; valid: cache_interval, cache_branch_id"),
        (("[accelerators.tome]", "[accelerators.tomes]"), r"unknown accelerator 'tomes'; valid: deepcache, tome"),
        (("ratio = [0.5]", "ratio = [0.9]"), r"\[accelerators.tome\]: ratio: 0.9 is not float in \[0, 0.75\]"),
        (('"tiny-sd-b"', '"tiny-sd-z"'), r"unknown pipeline 'tiny-sd-z'; valid: SD1.5, SD2.1, SDXL, PixArt-α, PixArt-Σ, tiny-sd-a, tiny-sd-b"),
        (("steps = [4]", "steps = [0]"), r"steps must be an integer ≥ 1, got 0"),
        (('dtype = "float32"', 'dtype = "fp8"'), r"unknown dtype 'fp8'; valid: float32, float16, bfloat16"),
        (("[[64, 64]]", "[[64, 60]]"), r"resolution 64x60 must be a multiple of 8"),
        (("num_prompts = 2", "num_prompts = 2\ncolour = 1"), r"\[protocol\]: unknown key 'colour'"),
        (("name = ", "nam = "), r"unknown key 'nam'"),
        (("[[base]]", "[[base]"), r"not valid TOML"),
    ],
)
def test_mistakes_name_file_entry_and_valid_choices(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = write_space(tmp_path, SMALL_SPACE.replace(*change))
    with pytest.raises(SpaceError, match=message) as info:
        load_space(path)
    assert str(info.value).startswith(str(path))


def test_a_builtin_architecture_has_no_pretrained_weights(tmp_path: Path) -> None:
    text = SMALL_SPACE + '\n[pipelines."tiny-sd-b"]\nweights = "pretrained"\n'
    with pytest.raises(SpaceError, match=r"tiny-sd-b has no published weights: with weights = \"pretrained\" set model"):
        load_space(write_space(tmp_path, text))


def test_missing_file_and_unknown_preset(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="no such space file"):
        load_space(tmp_path / "nope.toml")
    with pytest.raises(SpaceError, match="unknown preset 'huge'; valid: .*tiny"):
        load_preset("huge")
