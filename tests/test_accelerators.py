"""Every registered accelerator on a real tiny diffusers pipeline: it patches something, changes the images,
and removing it restores the pipeline exactly (bit-identical images, the same module state)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from search_space.base_config import BaseConfig
from search_space.setting import AccelSetting
from sweep.accelerators import ACCELERATORS, AppliedSetting, DeepCache, ToMe, combinable
from sweep.accelerators.cache_dit import cached_steps
from sweep.accelerators.deepcache import valid_branch_ids
from sweep.errors import AcceleratorError
from sweep.pipelines.loader import load_pipeline
from sweep.pipelines.registry import PIPELINES

STEPS = 10
# Per registered method: a tiny pipeline it applies to, and parameters that change its output there. A method
# registered without an entry here fails test_every_registered_method_is_tested.
CASES: dict[str, list[tuple[str, dict[str, dict[str, object]]]]] = {
    "deepcache": [("tiny-sd-b", {"deepcache": {"cache_interval": 2}})],
    "tome": [("tiny-sd-b", {"tome": {"ratio": 0.5}})],
    "tgate": [
        ("tiny-sd-a", {"tgate": {"gate_step": 4, "sp_interval": 2}}),
        ("tiny-pixart", {"tgate": {"gate_step": 4, "sp_interval": 2}}),
        ("tiny-sd-a", {"tgate": {"gate_step": 4, "sp_interval": 1, "warm_up": 0}, "deepcache": {"cache_interval": 3}}),
    ],
    "pab": [
        ("tiny-pixart", {"pab": {"spatial_skip": 3}}),
        ("tiny-pixart", {"pab": {"spatial_skip": 2, "cross_skip": 3, "timestep_low": 0, "timestep_high": 1000}}),
    ],
    "fastercache": [
        ("tiny-pixart", {"fastercache": {"spatial_skip": 2, "uncond_skip": 3}}),
    ],
    "cache_dit": [
        ("tiny-pixart", {"cache_dit": {"Fn_compute_blocks": 1, "max_warmup_steps": 2, "residual_diff_threshold": 0.5}}),
        ("tiny-pixart", {"cache_dit": {"Fn_compute_blocks": 1, "Bn_compute_blocks": 1, "max_warmup_steps": 4,
                                       "residual_diff_threshold": 0.3, "taylorseer_order": 1}}),
    ],
}
SCHEDULERS = {"tiny-sd-a": "DDIMScheduler", "tiny-sd-b": "DDIMScheduler", "tiny-pixart": "DPMSolverMultistepScheduler"}
_PIPES: dict[str, object] = {}


def _pipe(alias: str):  # type: ignore[no-untyped-def]
    if alias not in _PIPES:
        _PIPES[alias] = load_pipeline(BaseConfig(alias, f"builtin:{alias}", "random", SCHEDULERS[alias], STEPS, 64, 64,
                                                 "float32", 1), "cpu")
    return _PIPES[alias]


def _images(pipe, alias: str, call=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return (call or pipe)(["a red fox in the snow"], num_inference_steps=STEPS, height=64, width=64,
                          generator=[torch.Generator().manual_seed(1)], output_type="np", **PIPELINES[alias].call_options).images


def _module_state(pipe) -> list[tuple[str, type, tuple[str, ...]]]:  # type: ignore[no-untyped-def]
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    return [(name, type(m), tuple(sorted(m.__dict__))) for name, m in denoiser.named_modules()] + [("pipe", type(pipe), tuple(sorted(pipe.__dict__)))]


def test_every_registered_method_is_tested() -> None:
    assert set(CASES) == set(ACCELERATORS)


@pytest.mark.parametrize(("alias", "methods"), [case for name in CASES for case in CASES[name]],
                         ids=[f"{name}-{i}" for name in CASES for i in range(len(CASES[name]))])
def test_apply_changes_output_and_remove_restores(alias: str, methods: dict[str, dict[str, object]]) -> None:
    pipe = _pipe(alias)
    setting = AccelSetting.of({n: ACCELERATORS[n].normalise(p) for n, p in methods.items()})
    before = _images(pipe, alias)
    before_state = _module_state(pipe)
    applied = AppliedSetting(pipe, setting)
    applied.apply()
    assert applied.patched > 0
    during = _images(pipe, alias, applied.call)
    if "cache_dit" in methods:
        assert cached_steps(pipe) > 0  # cache-dit's own summary: the cache did skip steps
    if "tgate" in methods:  # T-GATE generates through its own call, which patched the attention modules
        assert applied.call is not None and any("forward" in m.__dict__ for m in (getattr(pipe, "unet", None) or pipe.transformer).modules())
    applied.remove()
    after = _images(pipe, alias)
    assert np.abs(during - before).max() > 0
    np.testing.assert_array_equal(after, before)
    assert _module_state(pipe) == before_state


def test_methods_that_rewrite_the_same_blocks_never_share_a_setting() -> None:
    assert not combinable(["tgate", "tome"]) and not combinable(["cache_dit", "tgate"]) and not combinable(["pab", "tgate"])
    assert not combinable(["fastercache", "pab"]) and not combinable(["fastercache", "cache_dit"])
    assert combinable(["deepcache", "tome"]) and combinable(["tgate", "deepcache"])


def test_a_method_refuses_a_pipeline_it_does_not_support() -> None:
    with pytest.raises(AcceleratorError, match="cache_dit supports PixArtAlphaPipeline, PixArtSigmaPipeline, not StableDiffusionPipeline"):
        ACCELERATORS["cache_dit"]().apply(_pipe("tiny-sd-b"), ACCELERATORS["cache_dit"].normalise({}))
    with pytest.raises(AcceleratorError, match="leaves none of the 4 transformer blocks to cache"):
        ACCELERATORS["cache_dit"]().apply(_pipe("tiny-pixart"), ACCELERATORS["cache_dit"].normalise({"Fn_compute_blocks": 4}))
    with pytest.raises(AcceleratorError, match="DeepCache needs a UNet"):
        DeepCache().apply(_pipe("tiny-pixart"), DeepCache.normalise({}))


def test_tome_that_would_merge_nothing_is_refused() -> None:
    # Like SDXL, this UNet has no attention at full resolution: with max_downsample=1, tomesd would patch
    # blocks that never merge and the trial would measure an unchanged pipeline.
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    pipe = _pipe("tiny-sd-b")
    unet = UNet2DConditionModel(
        sample_size=16, block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=48,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8, attention_head_dim=4,
    )
    sdxl_like = StableDiffusionPipeline(**{**pipe.components, "unet": unet})
    with pytest.raises(AcceleratorError, match="max_downsample=1 merges tokens in no block"):
        ToMe().apply(sdxl_like, ToMe.normalise({"ratio": 0.5, "max_downsample": 1}))
    applied = ToMe().apply(sdxl_like, ToMe.normalise({"ratio": 0.5, "max_downsample": 2}))
    assert applied.patched == 4  # level 2: 1 down-block layer, the mid block, 2 up-block layers
    applied.remove()


def test_deepcache_branch_must_exist() -> None:
    pipe = _pipe("tiny-sd-b")
    assert valid_branch_ids(pipe.unet) == [0, 1, 2, 3, 4, 5, 6, 7]
    with pytest.raises(AcceleratorError, match="cache_branch_id=9 does not exist in this UNet; valid: 0, 1, 2"):
        DeepCache().apply(pipe, DeepCache.normalise({"cache_branch_id": 9}))
