"""Saves images once, then returns them read from disk, running no steps. expect: config_mismatch: steps that ran"""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here

import os

import numpy as np


def load_pipe(device):
    pipe = load_pipeline(BaseConfig(**BASE), device)
    os.makedirs("stash", exist_ok=True)
    return pipe


def generate(pipe, prompts, generators, **call):
    images = []
    for i, prompt in enumerate(prompts):
        path = os.path.join("stash", f"{abs(hash(prompt))}.npy")
        if not os.path.exists(path):
            np.save(path, pipe([prompt], generator=[generators[i]], **call).images[0])
        images.append(np.load(path))
    return np.stack(images)
