"""Starts a daemon of its own session (out of the process group the grader stops) that loads the CPU while the
baseline is timed, so that the baseline reads slow. expect: evaluation_error: left its process group"""
import os
import time

from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here


def load_pipe(device):
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:  # its parent exits at once: the daemon is nobody's child
            end = time.monotonic() + 120
            while time.monotonic() < end:
                pass
        os._exit(0)
    time.sleep(0.5)  # the daemon is on its own by now
    return load_pipeline(BaseConfig(**BASE), device)
