"""Sleeps in every call, past the request limit. expect: evaluation_error: no answer within"""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here

import time


def load_pipe(device):
    return load_pipeline(BaseConfig(**BASE), device)


def generate(pipe, prompts, generators, **call):
    time.sleep(10_000)
