"""Canonical keys: their text is pinned, because a stored key must never change meaning."""

from __future__ import annotations

import pytest

from search_space.base_config import BaseConfig
from search_space.keys import canonical_json
from search_space.setting import AccelSetting
from sweep.accelerators import DeepCache, ToMe


def test_base_config_key_text_is_pinned() -> None:
    base = BaseConfig("SD1.5", "stable-diffusion-v1-5/stable-diffusion-v1-5", "pretrained", "DDIMScheduler", 50, 512, 512, "float16", 1)
    assert base.key == (
        '{"batch_size":1,"dtype":"float16","height":512,"model":"stable-diffusion-v1-5/stable-diffusion-v1-5",'
        '"pipeline":"SD1.5","scheduler":"DDIMScheduler","steps":50,"weights":"pretrained","width":512}'
    )
    assert BaseConfig.from_key(base.key) == base


def test_setting_key_is_order_independent_and_complete() -> None:
    a = AccelSetting.of({"tome": ToMe.normalise({"ratio": 0.5}), "deepcache": DeepCache.normalise({"cache_interval": 3})})
    b = AccelSetting.of({"deepcache": DeepCache.normalise({"cache_branch_id": 0, "cache_interval": 3.0}),
                         "tome": ToMe.normalise({"ratio": 0.50, "max_downsample": 1})})
    assert a.key == b.key == (
        '{"deepcache":{"cache_branch_id":0,"cache_interval":3},"tome":{"max_downsample":1,"merge_attn":true,'
        '"merge_crossattn":false,"merge_mlp":false,"ratio":0.5,"sx":2,"sy":2,"use_rand":true}}'
    )
    assert AccelSetting.from_key(a.key) == a
    assert AccelSetting.baseline().key == "{}"


def test_parameters_are_coerced_or_refused() -> None:
    assert DeepCache.normalise({"cache_interval": 2.0})["cache_interval"] == 2
    assert ToMe.normalise({"ratio": 1 / 2})["ratio"] == 0.5
    with pytest.raises(ValueError, match="int in"):
        DeepCache.normalise({"cache_interval": 2.5})
    with pytest.raises(ValueError, match="one of 1, 2, 4, 8"):
        ToMe.normalise({"max_downsample": 3})
    with pytest.raises(ValueError, match="unknown parameter 'interval'"):
        DeepCache.normalise({"interval": 3})
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_keys_keep_non_ascii_names_as_they_are() -> None:
    from search_space.keys import canonical_json

    assert canonical_json({"pipeline": "PixArt-α", "n": 1}) == '{"n":1,"pipeline":"PixArt-α"}'


def test_a_setting_equals_hashes_and_iterates_by_its_key() -> None:
    from search_space.setting import AccelSetting

    setting = AccelSetting.of({"tome": {"ratio": 0.5}, "deepcache": {"cache_interval": 3}})
    assert setting == AccelSetting.of({"deepcache": {"cache_interval": 3}, "tome": {"ratio": 0.5}})
    assert setting != setting.key and setting != object()
    assert hash(setting) == hash(setting.key)
    assert [(name, dict(params)) for name, params in setting] == [("deepcache", {"cache_interval": 3}), ("tome", {"ratio": 0.5})]


def test_parameter_axes_say_what_is_valid() -> None:
    from search_space.catalogue import ParamSpec

    flag = ParamSpec("flag", bool, False)
    assert flag.describe_valid() == "true or false" and flag.coerce(True) is True
    with pytest.raises(ValueError, match=r"^1 is not true or false$"):
        flag.coerce(1)
    free = ParamSpec("x", float, 1.0)
    assert free.describe_valid() == "float in [-inf, inf]" and free.coerce(4) == 4.0
    bounded = ParamSpec("n", int, 2, minimum=1, maximum=8)
    assert bounded.describe_valid() == "int in [1, 8]" and bounded.coerce(3.0) == 3
    for bad in (True, "2", 2.5, 0, 9):
        with pytest.raises(ValueError, match=r"is not int in \[1, 8\]$"):
            bounded.coerce(bad)
    picked = ParamSpec("c", int, 1, choices=(1, 3))
    assert picked.describe_valid() == "one of 1, 3"
    with pytest.raises(ValueError, match=r"^2 is not one of 1, 3$"):
        picked.coerce(2)
