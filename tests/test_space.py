"""Space files: expansion into keys, applicability notes, and one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.errors import SpaceError
from sweep.study.catalogue import load_preset, load_space
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


def _parse(data: dict[str, object], source: str = "s.toml"):  # type: ignore[no-untyped-def]
    import tomllib

    from search_space.spec import parse_space
    from sweep.study.catalogue import CATALOGUE

    return parse_space({**tomllib.loads(SMALL_SPACE), **data}, source, CATALOGUE)


def test_every_protocol_key_is_read_as_declared() -> None:
    from search_space.spec import _PROTOCOL_READERS, PROTOCOL_KEYS, ProtocolSpec

    assert set(_PROTOCOL_READERS) == set(PROTOCOL_KEYS)
    declared = {
        "prompts": "mine.txt", "num_prompts": 7, "timing_prompts": 3, "seed": 0, "scorer": "ViT-L-14",
        "scorer_pretrained": "openai", "warmup_tolerance": 0.2, "warmup_cap": 2, "min_pairs": 5, "max_pairs": 5,
        "target_half_width": 0.01,
    }
    assert _parse({"protocol": declared}).protocol == ProtocolSpec(**declared)  # type: ignore[arg-type]
    assert _parse({"protocol": {}}).protocol == ProtocolSpec()
    assert _parse({"protocol": {"warmup_tolerance": 1e-9}}).protocol.warmup_tolerance == 1e-9


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("prompts", "", "prompts must be a non-empty string, got ''"),
        ("prompts", 3, "prompts must be a non-empty string, got 3"),
        ("num_prompts", 0, "num_prompts must be an integer ≥ 1, got 0"),
        ("num_prompts", 2.0, "num_prompts must be an integer ≥ 1, got 2.0"),
        ("timing_prompts", 0, "timing_prompts must be an integer ≥ 1, got 0"),
        ("seed", -1, "seed must be an integer ≥ 0, got -1"),
        ("seed", True, "seed must be an integer ≥ 0, got True"),
        ("scorer", "", "scorer must be a non-empty string, got ''"),
        ("scorer_pretrained", "", "scorer_pretrained must be a non-empty string, got ''"),
        ("warmup_tolerance", 0, "warmup_tolerance must be a number in (0, 1), got 0"),
        ("warmup_tolerance", 1, "warmup_tolerance must be a number in (0, 1), got 1"),
        ("warmup_tolerance", "x", "warmup_tolerance must be a number in (0, 1), got 'x'"),
        ("warmup_tolerance", False, "warmup_tolerance must be a number in (0, 1), got False"),
        ("warmup_cap", 1, "warmup_cap must be an integer ≥ 2, got 1"),
        ("min_pairs", 0, "min_pairs must be an integer ≥ 1, got 0"),
        ("max_pairs", 0, "max_pairs must be an integer ≥ 1, got 0"),
        ("max_pairs", 1, "max_pairs (1) must be at least min_pairs (6)"),
        ("target_half_width", 1.5, "target_half_width must be a number in (0, 1), got 1.5"),
    ],
)
def test_each_protocol_mistake_names_its_key(key: str, value: object, message: str) -> None:
    protocol = {key: value} if key != "max_pairs" or value != 1 else {"min_pairs": 6, "max_pairs": 1}
    with pytest.raises(SpaceError) as info:
        _parse({"protocol": protocol})
    assert str(info.value) == f"s.toml: [protocol]: {message}"


def test_file_level_mistakes_have_no_place_and_entry_mistakes_name_theirs() -> None:
    cases = [
        ({"protocol": 3}, "s.toml: [protocol] must be a table"),
        ({"combine": "yes"}, "s.toml: combine must be true or false, got 'yes'"),
        ({"base": []}, "s.toml: no [[base]] entries: declare at least one group of pipelines × schedulers × steps"),
        ({"accelerators": {"deepcache": 1}}, "s.toml: [accelerators.deepcache]: [accelerators.deepcache] must be a table"),
        ({"accelerators": {"deepcache": {"cache_interval": []}}}, "s.toml: [accelerators.deepcache]: cache_interval has no values"),
        ({"accelerators": {"deep-cache": {}}}, "s.toml: [accelerators.\"deep-cache\"]: unknown accelerator 'deep-cache'; valid: deepcache, tome, tgate, cache_dit, pab, fastercache"),
        ({"base": [{"pipelines": "tiny-sd-b", "schedulers": "DDIMScheduler"}]}, "s.toml: [[base]] #1: missing 'steps'"),
        ({"base": [{"pipelines": "tiny-sd-b", "schedulers": "DDIMScheduler", "steps": 2},
                   {"pipelines": "tiny-sd-b", "schedulers": "DDIMScheduler", "steps": []}]}, "s.toml: [[base]] #2: steps has no values"),
        ({"pipelines": {"tiny-sd-b": {"model": ""}}}, "s.toml: [[base]] #1 tiny-sd-b: model must be a non-empty string, got ''"),
        ({"pipelines": {"tiny-sd-b": {"revision": "x"}}}, "s.toml: [pipelines.\"tiny-sd-b\"]: unknown key 'revision'; valid: model, weights"),
    ]
    for data, message in cases:
        with pytest.raises(SpaceError) as info:
            _parse(data)
        assert str(info.value) == message


def test_a_space_expands_to_exactly_these_entries() -> None:
    import tomllib

    from search_space import AccelSetting, BaseConfig, Entry, ProtocolSpec
    from search_space.spec import parse_space
    from sweep.study.catalogue import CATALOGUE

    data = tomllib.loads("""
        [[base]]
        pipelines = ["tiny-sd-b", "PixArt-α"]
        schedulers = "DDIMScheduler"
        steps = 3
        resolutions = [64, 128]
        dtype = "bfloat16"
        batch_size = 2
        accelerators = ["deepcache", "tome@big"]

        [[base]]
        pipelines = "tiny-sd-b"
        schedulers = ["DDIMScheduler"]
        steps = [3]
        resolutions = [[64, 128]]
        dtype = "bfloat16"
        batch_size = 2
        accelerators = ["tome"]

        [pipelines."tiny-sd-b"]
        model = "/models/b"

        [accelerators.deepcache]
        cache_interval = [2, 2, 3]

        [accelerators.tome]
        ratio = 0.25

        [accelerators."tome@big"]
        ratio = [0.5]
        max_downsample = 2
    """)
    space = parse_space(data, "dir/my-study.toml", CATALOGUE)
    assert (space.name, space.source, space.description, space.combine, space.protocol) == (
        "my-study", "dir/my-study.toml", "", True, ProtocolSpec())
    dc = {c: AccelSetting.of({"deepcache": {"cache_interval": c, "cache_branch_id": 0}}) for c in (2, 3)}
    tome = {r: {"ratio": r, "max_downsample": m, "sx": 2, "sy": 2, "use_rand": True, "merge_attn": True,
                "merge_crossattn": False, "merge_mlp": False} for r, m in ((0.5, 2), (0.25, 1))}
    big = AccelSetting.of({"tome": tome[0.5]})
    both = {c: AccelSetting.of({"deepcache": dict(dc[c])["deepcache"], "tome": tome[0.5]}) for c in (2, 3)}
    sd = BaseConfig("tiny-sd-b", "/models/b", "random", "DDIMScheduler", 3, 64, 128, "bfloat16", 2)
    pixart = BaseConfig("PixArt-α", "PixArt-alpha/PixArt-XL-2-1024-MS", "pretrained", "DDIMScheduler", 3, 64, 128,
                        "bfloat16", 2)
    assert space.entries == (
        # the second group names the same base configuration: its settings join the first's
        Entry(sd, (AccelSetting.baseline(), big, dc[2], both[2], dc[3], both[3], AccelSetting.of({"tome": tome[0.25]}))),
        Entry(pixart, (AccelSetting.baseline(),), (
            "deepcache: not applicable to PixArt-α (supports unet denoisers)",
            f"tome: not applicable to PixArt-α (supports {CATALOGUE.methods['tome'].describe_support()})")),
    )
    assert space.trial_count == 8
    described = parse_space({**data, "name": "n", "description": "d", "combine": False}, "x.toml", CATALOGUE)
    assert (described.name, described.description, described.combine) == ("n", "d", False)
    assert [len(e.settings) for e in described.entries] == [1 + 3 + 1, 1]  # each method alone


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"accelerators": 1}, "[accelerators] must be a table"),
        ({"pipelines": []}, "[pipelines] must be a table"),
        ({"pipelines": {"tiny-sd-z": {}}}, "[pipelines.\"tiny-sd-z\"]: unknown pipeline 'tiny-sd-z'; valid: "),
        ({"pipelines": {"tiny-sd-b": 2}}, "[pipelines.\"tiny-sd-b\"]: [pipelines.tiny-sd-b] must be a table"),
        ({"pipelines": {"tiny-sd-b": {"weights": "fp8"}}}, "[[base]] #1 tiny-sd-b: unknown weights 'fp8'; valid: random, pretrained"),
        ({"base": [3]}, "[[base]] #1: [[base]] must be a table"),
        ({"base": {"pipelines": 1}}, "no [[base]] entries"),
        ({"base": [{"pipelines": [], "schedulers": "DDIMScheduler", "steps": 1}]}, "[[base]] #1: pipelines has no values"),
        ({"base": [{"pipelines": "tiny-sd-b", "schedulers": [], "steps": 1}]}, "[[base]] #1: schedulers has no values"),
        ({"base": [{"pipelines": "tiny-sd-b", "schedulers": "DDIMScheduler", "steps": 1, "resolutions": []}]},
         "[[base]] #1: resolutions has no values"),
        ({"base": [{"pipelines": "tiny-sd-b", "schedulers": "", "steps": 1}]}, "[[base]] #1: scheduler must be a non-empty string, got ''"),
        ({"base": [{"pipelines": "tiny-sd-b", "schedulers": "DDIMScheduler", "steps": 1, "resolutions": [[64]]}]},
         "[[base]] #1: resolutions must be [height, width] pairs, got [64]"),
        ({"base": [{"pipelines": "tiny-sd-b", "schedulers": "DDIMScheduler", "steps": 1, "resolutions": [64, 64, 64]}]},
         "[[base]] #1: resolutions must be [height, width] pairs, got [64, 64, 64]"),
        ({"base": [{"pipelines": "tiny-sd-b", "schedulers": "DDIMScheduler", "steps": 1, "resolutions": [[64, 4]]}]},
         "[[base]] #1: resolution must be an integer ≥ 8, got 4"),
        ({"base": [{"pipelines": "tiny-sd-b", "schedulers": "DDIMScheduler", "steps": 1, "batch_size": 0}]},
         "[[base]] #1: batch_size must be an integer ≥ 1, got 0"),
        ({"base": [{"pipelines": "tiny-sd-b", "schedulers": "DDIMScheduler", "steps": 1, "accelerators": "fast"}]},
         "[[base]] #1: unknown accelerator 'fast'; valid: deepcache, tome"),
        ({"accelerators": {"tome": {}, "tome@b": {}}, "base": [{"pipelines": "tiny-sd-b", "schedulers": "DDIMScheduler",
                                                                "steps": 1, "accelerators": ["tome", "tome@b"]}]},
         "[[base]] #1: accelerators ['tome', 'tome@b'] name one accelerator twice; choose one grid of each"),
        ({"accelerators": {"tome@a@b": {"ratio": 0.5}}}, "s.toml: [accelerators.\"tome@a@b\"]"),  # parses: method tome
    ],
)
def test_each_space_mistake_has_its_exact_message(data: dict[str, object], message: str) -> None:
    if message.endswith('[accelerators."tome@a@b"]'):
        assert [e.settings for e in _parse(data).entries]  # a grid name may hold several @: its method is before the first
        return
    with pytest.raises(SpaceError) as info:
        _parse(data)
    assert str(info.value).startswith("s.toml: ") and message in str(info.value)


def test_a_pipeline_may_be_named_by_its_other_spelling() -> None:
    space = _parse({"base": [{"pipelines": "PixArt-alpha", "schedulers": "DDIMScheduler", "steps": 2}]})
    assert [e.base.pipeline for e in space.entries] == ["PixArt-α"]


def test_defaults_of_a_minimal_space_and_default_grids() -> None:
    minimal = _parse({"accelerators": {"tome": {}, "tome@big": {"ratio": 0.5}},
                      "base": [{"pipelines": "tiny-sd-b", "schedulers": "DDIMScheduler", "steps": 2}]})
    (entry,) = minimal.entries
    assert (entry.base.batch_size, entry.base.dtype, entry.base.height, entry.base.width) == (1, "float16", 64, 64)
    assert [dict(s) for s in entry.settings[1:]] == [{"tome": dict(dict(entry.settings[1])["tome"])}]  # "tome" only
    assert dict(dict(entry.settings[1])["tome"])["ratio"] == 0.5 and len(entry.settings) == 2
    from search_space.spec import parse_space
    from sweep.study.catalogue import CATALOGUE

    bare = parse_space({"base": [{"pipelines": "tiny-sd-b", "schedulers": "DDIMScheduler", "steps": 2}]}, "b.toml", CATALOGUE)
    assert [len(e.settings) for e in bare.entries] == [1] and bare.name == "b" and bare.combine is True


def test_a_method_for_some_pipeline_classes_applies_to_them() -> None:
    space = _parse({"accelerators": {"tgate": {}}, "base": [{"pipelines": "tiny-sd-b", "schedulers": "DDIMScheduler",
                                                               "steps": 2, "accelerators": ["tgate"]}]})
    (entry,) = space.entries
    assert entry.notes == () and [tuple(s.methods) for s in entry.settings] == [(), ("tgate",)]


def test_file_and_preset_errors_are_exact(tmp_path: Path) -> None:
    from search_space.spec import preset_names

    with pytest.raises(SpaceError) as info:
        load_space(tmp_path)
    assert str(info.value) == f"{tmp_path}: cannot read space file (Is a directory)"
    with pytest.raises(SpaceError) as info:
        load_preset("huge")
    assert str(info.value) == f"unknown preset 'huge'; valid: {', '.join(preset_names())}"
    text = SMALL_SPACE + '\n[pipelines."tiny-sd-b"]\nweights = "pretrained"\n'
    with pytest.raises(SpaceError) as info:
        load_space(write_space(tmp_path, text))
    assert str(info.value).endswith(': [[base]] #1 tiny-sd-b: tiny-sd-b has no published weights: with weights = '
                                    '"pretrained" set model to a local diffusers folder')
