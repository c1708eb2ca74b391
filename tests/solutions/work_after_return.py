"""Returns blank images at once and generates in a thread after the call returned.
Its steps run outside the call. expect: config_mismatch: steps that ran"""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here

import threading

import numpy as np


def load_pipe(device):
    return load_pipeline(BaseConfig(**BASE), device)


def generate(pipe, prompts, generators, **call):
    out = np.zeros((len(prompts), call["height"], call["width"], 3), dtype=np.float32)

    def later():
        out[:] = pipe(prompts, generator=generators, **call).images

    threading.Thread(target=later, daemon=True).start()
    return out
