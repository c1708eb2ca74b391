"""Pipeline aliases: full-size architectures with published parameter counts, schedulers by name, loading
from a local diffusers folder, and the clear error for pretrained weights that cannot be had offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from search_space.base_config import BaseConfig
from sweep.errors import ModelLoadError, SpaceError
from sweep.pipelines.loader import build_random, load_pipeline
from sweep.pipelines.registry import PIPELINES
from sweep.study.catalogue import load_preset

# Parameter counts of the published checkpoints (diffusers folders on the Hugging Face hub).
PUBLISHED = {
    "SD1.5": {"unet": 859_520_964, "text_encoder": 123_060_480, "vae": 83_653_863},
    "SD2.1": {"unet": 865_910_724, "text_encoder": 340_387_840, "vae": 83_653_863},
    "SDXL": {"unet": 2_567_463_684, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840, "vae": 83_653_863},
    "PixArt-α": {"transformer": 611_349_152, "text_encoder": 4_762_310_656, "vae": 83_653_863},
    "PixArt-Σ": {"transformer": 610_856_096, "text_encoder": 4_762_310_656, "vae": 83_653_863},
}


@pytest.mark.parametrize("alias", list(PUBLISHED))
def test_full_size_architectures_match_published_counts(alias: str) -> None:
    pipe = build_random(PIPELINES[alias], "meta", "float16")
    assert type(pipe).__name__ == PIPELINES[alias].pipeline_class
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in pipe.components.items() if hasattr(m, "parameters")}
    assert counts == PUBLISHED[alias]


def test_any_diffusers_scheduler_by_name() -> None:
    base = BaseConfig("tiny-sd-a", "builtin:tiny-sd-a", "random", "UniPCMultistepScheduler", 3, 64, 64, "float32", 1)
    pipe = load_pipeline(base, "cpu")
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"  # built from the pipeline's own config
    with pytest.raises(SpaceError, match="unknown scheduler 'Nope'; valid: .*DDIMScheduler"):
        load_pipeline(BaseConfig("tiny-sd-a", "builtin:tiny-sd-a", "random", "Nope", 3, 64, 64, "float32", 1), "cpu")


def test_pretrained_from_a_local_diffusers_folder(tmp_path: Path) -> None:
    tiny = build_random(PIPELINES["tiny-sd-b"], "cpu", "float32")
    tiny.save_pretrained(tmp_path / "folder")
    base = BaseConfig("SD1.5", str(tmp_path / "folder"), "pretrained", "DDIMScheduler", 2, 64, 64, "float32", 1)
    pipe = load_pipeline(base, "cpu")
    for name in ("unet", "vae", "text_encoder"):
        for (k, a), (_, b) in zip(getattr(pipe, name).state_dict().items(), getattr(tiny, name).state_dict().items()):
            assert torch.equal(a, b), f"{name}.{k} differs after the round trip"
    image = pipe("a lighthouse", num_inference_steps=2, height=64, width=64, output_type="np").images[0]
    assert image.shape == (64, 64, 3)


def test_missing_local_reference_is_a_clear_error(tmp_path: Path) -> None:
    base = BaseConfig("SD1.5", str(tmp_path / "absent.safetensors"), "pretrained", "DDIMScheduler", 2, 512, 512, "float16", 1)
    with pytest.raises(ModelLoadError, match=r"SD1.5: no such file or folder .*\(1\) a hub id.*\(2\) a local diffusers folder.*\(3\) a single"):
        load_pipeline(base, "cpu")


def test_offline_pretrained_request_fails_with_one_clear_line() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "sweep", "pipelines", "--build", "SD1.5", "--weights", "pretrained", "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    message = " ".join(proc.stderr.split())
    assert "cannot load SD1.5 weights from 'stable-diffusion-v1-5/stable-diffusion-v1-5'" in message
    assert "(1) a hub id" in message and "(2) a local diffusers folder" in message and "(3) a single .safetensors/.ckpt" in message


def test_reference_preset_has_the_31_base_configurations() -> None:
    space = load_preset("reference")
    assert len(space.entries) == 31
    assert all(len(e.settings) > 1 and not e.notes for e in space.entries)  # every row has settings
    pixart = [e for e in space.entries if e.base.pipeline.startswith("PixArt")]
    # the replaced study's methods: T-GATE on the PixArt rows, DeepCache × ToMe on the SD rows
    assert len(pixart) == 4 and {m for e in pixart for s in e.settings for m in s.methods} == {"tgate"}
    assert {m for e in space.entries if e not in pixart for s in e.settings for m in s.methods} == {"deepcache", "tome"}
    every = load_preset("reference-all")
    assert len(every.entries) == 31
    methods = {e.base.pipeline: {m for s in e.settings for m in s.methods} for e in every.entries}
    assert methods["SD1.5"] == methods["SDXL"] == {"deepcache", "tome", "tgate"}
    assert methods["PixArt-α"] == methods["PixArt-Σ"] == {"tgate", "cache_dit", "pab", "fastercache"}
    combos = {tuple(sorted(s.methods)) for e in every.entries for s in e.settings if len(s.methods) > 1}
    assert combos == {("deepcache", "tome"), ("deepcache", "tgate")}  # T-GATE with its own DeepCache loader
    sdxl = [e for e in space.entries if e.base.pipeline == "SDXL"]
    assert {s.methods["tome"]["max_downsample"] for e in sdxl for s in e.settings if "tome" in s.methods} == {2}
    assert {(e.base.height, e.base.width) for e in space.entries if e.base.pipeline == "SD2.1"} == {(768, 768)}
    assert space.protocol.prompts == "coco" and space.protocol.scorer == "ViT-g-14"
