"""Generates at half the size asked for. expect: output_check_failed: not the"""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here


def load_pipe(device):
    return load_pipeline(BaseConfig(**BASE), device)


def generate(pipe, prompts, generators, **call):
    call["height"] //= 2
    call["width"] //= 2
    return pipe(prompts, generator=generators, **call)
