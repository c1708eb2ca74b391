"""Unaccelerated; looks for the grader's database, seeds and process, and prints what it reached.
expect: speedup_target_not_met"""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here

import os


def load_pipe(device):
    reached = [f"env {k}" for k in os.environ if k.startswith("SWEEP_") and k != "SWEEP_DEVICE"]
    parent = os.getppid()
    for name in ("environ", "mem", "cwd/sweep.db", "maps"):
        try:
            with open(f"/proc/{parent}/{name}", "rb") as f:
                f.read(16)
            reached.append(f"/proc/parent/{name}")
        except OSError:
            pass
    reached += [f"cwd {n}" for n in os.listdir(".") if n not in ("solution.py", "output.log")]
    print("REACHED: " + (", ".join(reached) if reached else "nothing"))
    return load_pipeline(BaseConfig(**BASE), device)
