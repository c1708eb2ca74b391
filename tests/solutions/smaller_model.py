"""Another, smaller model of the same pipeline class (tiny-sd-a for tiny-sd-b, or the reverse).
expect: config_mismatch: weights of"""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here


def load_pipe(device):
    other = "tiny-sd-a" if BASE["pipeline"] != "tiny-sd-a" else "tiny-sd-b"
    return load_pipeline(BaseConfig(**{**BASE, "pipeline": other, "model": f"builtin:{other}", "weights": "random"}), device)
