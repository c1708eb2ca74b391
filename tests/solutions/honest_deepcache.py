"""Honest: DeepCache (interval 3) through its own helper. expect: pass"""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here


def load_pipe(device):
    from DeepCache import DeepCacheSDHelper

    pipe = load_pipeline(BaseConfig(**BASE), device)
    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=3, cache_branch_id=0)
    helper.enable()
    return pipe
