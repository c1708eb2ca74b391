"""Runs every call in full but returns, for a prompt it has seen, the image of its first seed.
expect: output_check_failed: outputs replayed"""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here
FIRST: dict = {}


def load_pipe(device):
    return load_pipeline(BaseConfig(**BASE), device)


def generate(pipe, prompts, generators, **call):
    images = pipe(prompts, generator=generators, **call).images
    for i, prompt in enumerate(prompts):
        images[i] = FIRST.setdefault(prompt, images[i].copy())
    return images
