"""Right weights when observed at load, then a nudged UNet for the timed calls.
expect: config_mismatch: after the timed calls: weights of unet"""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here

CALLS = [0]


def load_pipe(device):
    return load_pipeline(BaseConfig(**BASE), device)


def generate(pipe, prompts, generators, **call):
    import torch

    CALLS[0] += 1
    if CALLS[0] == 1:
        with torch.no_grad():
            next(pipe.unet.parameters()).mul_(0.5)
    return pipe(prompts, generator=generators, **call)
