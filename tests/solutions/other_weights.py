"""The right model, with the VAE's weights nudged. expect: config_mismatch: weights of vae"""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here


def load_pipe(device):
    import torch

    pipe = load_pipeline(BaseConfig(**BASE), device)
    with torch.no_grad():
        next(pipe.vae.parameters()).mul_(1.01)
    return pipe
