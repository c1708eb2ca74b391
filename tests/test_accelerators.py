"""Real DeepCache and ToMe patches on a real tiny diffusers pipeline: they change the output, and remove()
restores the pipeline exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from search_space.base_config import BaseConfig
from sweep.accelerators import DeepCache, ToMe
from sweep.accelerators.deepcache import valid_branch_ids
from sweep.errors import AcceleratorError
from sweep.pipelines.loader import load_pipeline


@pytest.fixture(scope="module")
def pipe():  # type: ignore[no-untyped-def]
    base = BaseConfig("tiny-sd-b", "builtin:tiny-sd-b", "random", "DDIMScheduler", 4, 64, 64, "float32", 1)
    return load_pipeline(base, "cpu")


def _images(pipe) -> np.ndarray:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    out = pipe(["a red fox in the snow"], num_inference_steps=4, height=64, width=64,
               generator=torch.Generator().manual_seed(1), output_type="np")
    return out.images


def _module_state(pipe) -> list[tuple[str, type, tuple[str, ...]]]:  # type: ignore[no-untyped-def]
    return [(name, type(m), tuple(sorted(m.__dict__))) for name, m in pipe.unet.named_modules()]


@pytest.mark.parametrize(
    ("accelerator", "params"),
    [(DeepCache(), {"cache_interval": 2}), (ToMe(), {"ratio": 0.5})],
    ids=["deepcache", "tome"],
)
def test_apply_changes_output_and_remove_restores(pipe, accelerator, params) -> None:  # type: ignore[no-untyped-def]
    before_state = _module_state(pipe)
    before = _images(pipe)
    applied = accelerator.apply(pipe, type(accelerator).normalise(params))
    assert applied.patched > 0
    during = _images(pipe)
    applied.remove()
    after = _images(pipe)
    assert np.abs(during - before).max() > 0
    np.testing.assert_array_equal(after, before)
    assert _module_state(pipe) == before_state


def test_tome_that_would_merge_nothing_is_refused(pipe) -> None:  # type: ignore[no-untyped-def]
    # Like SDXL, this UNet has no attention at full resolution: with max_downsample=1, tomesd would patch
    # blocks that never merge and the trial would measure an unchanged pipeline.
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

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


def test_deepcache_branch_must_exist(pipe) -> None:  # type: ignore[no-untyped-def]
    assert valid_branch_ids(pipe.unet) == [0, 1, 2, 3, 4, 5, 6, 7]
    with pytest.raises(AcceleratorError, match="cache_branch_id=9 does not exist in this UNet; valid: 0, 1, 2"):
        DeepCache().apply(pipe, DeepCache.normalise({"cache_branch_id": 9}))
