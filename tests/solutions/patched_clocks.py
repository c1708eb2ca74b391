"""Unaccelerated, with every clock it can reach made to run ten times slower (time.perf_counter,
time.monotonic, torch.cuda.Event and synchronize). expect: speedup_target_not_met"""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here

import time

_perf, _mono = time.perf_counter, time.monotonic
time.perf_counter = lambda: _perf() / 10
time.monotonic = lambda: _mono() / 10


def load_pipe(device):
    import torch

    if torch.cuda.is_available():
        class Event(torch.cuda.Event):
            def elapsed_time(self, end):
                return super().elapsed_time(end) / 10

        torch.cuda.Event = Event
        torch.cuda.synchronize = lambda *a, **k: None
    return load_pipeline(BaseConfig(**BASE), device)
