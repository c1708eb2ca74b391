"""Runs half the steps it is asked for. expect: config_mismatch: steps that ran"""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here


def load_pipe(device):
    return load_pipeline(BaseConfig(**BASE), device)


def generate(pipe, prompts, generators, **call):
    call["num_inference_steps"] = max(1, call["num_inference_steps"] // 2)
    return pipe(prompts, generator=generators, **call)
