"""Raises while it builds its pipeline. expect: evaluation_error: RuntimeError: no pipeline today"""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here



def load_pipe(device):
    raise RuntimeError("no pipeline today")
