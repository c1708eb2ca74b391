"""Validation of the values a user types: devices, durations, numbers and seeds, for the CLI and the HTTP API alike.

Each check returns the value in its canonical form or raises a UsageError whose message is one line naming the
option and what is valid. The fronts call these and nothing else, so a value refused by one is refused by all.
"""

from __future__ import annotations

import math
import re

from sweep.errors import UsageError

MEASURING_DEVICES = ("cpu", "cuda")
"""Device types sweep generates and times images on (CUDA events, or perf_counter on the CPU)."""
SEED_MAX = 2**32 - 1
"""The largest seed numpy and Optuna's samplers take."""


def check_device(device: str, option: str = "--device", *, allow_meta: bool = False) -> str:
    """``device`` if this machine can run a pipeline on it (``meta`` too where ``allow_meta``: shapes only)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"{option} {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if dev.type == "meta":
        if allow_meta:
            return device
        raise UsageError(f"{option} meta allocates no weights and cannot generate images; use cpu or cuda")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"{option} {device}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"{option} {device}: only {torch.cuda.device_count()} CUDA device(s) here")
        return device
    if dev.type == "cpu":
        if dev.index not in (None, 0):
            raise UsageError(f"{option} {device}: there is one CPU device, cpu")
        return device
    raise UsageError(f"{option} {device}: sweep times generations on {' or '.join(MEASURING_DEVICES)} devices only")


def parse_devices(text: str, option: str = "--devices") -> list[str]:
    """``cuda:0,cuda:1`` → each device checked; an empty entry or list is a mistake, never a silent fallback."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(not p for p in parts):
        raise UsageError(f"{option} {text!r}: give comma-separated devices, e.g. cuda:0,cuda:1 (no empty entries)")
    return [check_device(p, option) for p in parts]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"  # ASCII digits only: str.isdigit and \d accept other scripts' digits
MAX_DURATION_S = 366 * 86400.0


def parse_duration(text: str, option: str = "--time-budget") -> float:
    """``90``, ``90s``, ``30m``, ``1h30m``, ``2h`` → seconds; a clear error otherwise."""
    value = text.strip().lower()
    if re.fullmatch(_NUMBER, value):
        seconds = float(value)
    else:
        parts = re.findall(rf"({_NUMBER})([smhd])", value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise UsageError(f"{option} {text!r} is not a duration: use e.g. 90s, 30m, 1h30m, 2h")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not 0 < seconds <= MAX_DURATION_S:
        raise UsageError(f"{option} {text!r} must be longer than zero and at most 366 days")
    return seconds


def finite(value: float, option: str, low: float, high: float, *, high_open: bool = False) -> float:
    """``value`` if it is a finite number in [low, high] (or [low, high)); the option's one-line error otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{option} must be a finite number, got {value!r}")
    if value < low or value > high or (high_open and value == high):
        raise UsageError(f"{option} must be in [{low:g}, {high:g}{')' if high_open else ']'}, got {value!r}")
    return float(value)


def number(text: str, option: str) -> float:
    """Text (a query parameter) → a finite number; the range is the caller's check (``check_max_loss``...)."""
    stripped = text.strip()
    if not re.fullmatch(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", stripped):
        raise UsageError(f"{option} must be a finite number, got {text!r}")
    return finite(float(stripped), option, -math.inf, math.inf)


def check_max_loss(max_loss: float, option: str = "--max-loss") -> float:
    return finite(max_loss, option, 0.0, 1.0, high_open=True)


MAX_TARGET = 1e6
"""No speed-up is larger (the legacy import bounds speed-ups the same way)."""


def check_target(target: float, option: str = "--target") -> float:
    return finite(target, option, 0.0, MAX_TARGET)


def check_seed(seed: int, option: str = "--seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise UsageError(f"{option} must be an integer in [0, {SEED_MAX}], got {seed!r}")
    return seed
