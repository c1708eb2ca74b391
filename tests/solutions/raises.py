"""Raises while it builds its pipeline. expect: evaluation_error: RuntimeError: no pipeline today"""

BASE: dict = {}  # the test writes the task's base configuration here



def load_pipe(device):
    raise RuntimeError("no pipeline today")
