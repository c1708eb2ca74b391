"""The baseline itself, handed in as a solution (the control of the clock-patching plants). expect: speedup_target_not_met"""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here


def load_pipe(device):
    return load_pipeline(BaseConfig(**BASE), device)
