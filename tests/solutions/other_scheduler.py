"""Euler in place of the task's scheduler. expect: config_mismatch: scheduler_class"""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here


def load_pipe(device):
    from diffusers import EulerDiscreteScheduler

    pipe = load_pipeline(BaseConfig(**BASE), device)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    return pipe
