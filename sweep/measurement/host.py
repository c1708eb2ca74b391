"""The host's state during timed generations: what decides a speed-up that the CPU launching the kernels bounds.

At batch 1 these pipelines are partly CPU-bound on a fast GPU, and that CPU is shared with the host's other
tenants: the same setting measured 1.55x on one H200 and 1.03x on another. So every timing records, beside
its seconds, the CPU it ran on, the CPU time this process spent per image, the steal time (the hypervisor
running other guests on this machine's CPUs) per image, and the GPU's busy fraction sampled after each timed
call. The readings are taken outside the timed region.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from sweep.measurement.environment import _cpu_name


def _steal_seconds() -> float | None:
    """Steal time of every CPU so far (seconds), from /proc/stat; None where the kernel does not say."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def gpu_busy(device: str) -> float | None:
    """The GPU's utilisation over its last sample period (0..1), where NVML can be read; else None."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    try:
        return float(torch.cuda.utilization(torch.device(device))) / 100.0
    except Exception:  # no pynvml, or a device NVML cannot see: the fraction is unknown, not zero
        return None


@dataclass
class HostMeter:
    """Counters a generator adds to around each timed call; a pass reads the difference it made."""

    device: str
    cpu_seconds: float = 0.0
    steal_seconds: float = 0.0
    steal_known: bool = True
    gpu_busy: list[float] | None = None
    images: int = 0

    def __post_init__(self) -> None:
        self.gpu_busy = []

    def before(self) -> tuple[float, float | None]:
        return time.process_time(), _steal_seconds()

    def after(self, started: tuple[float, float | None], images: int) -> None:
        cpu, steal = started
        self.cpu_seconds += time.process_time() - cpu
        now = _steal_seconds()
        if steal is None or now is None:
            self.steal_known = False
        else:
            self.steal_seconds += now - steal
        busy = gpu_busy(self.device)
        if busy is not None:
            self.gpu_busy.append(busy)  # type: ignore[union-attr]
        self.images += images

    def mark(self) -> tuple[float, float, int, int]:
        return self.cpu_seconds, self.steal_seconds, len(self.gpu_busy or []), self.images

    def since(self, mark: tuple[float, float, int, int]) -> dict[str, object] | None:
        """The host's state over the calls made since ``mark`` (None where no image was generated)."""
        cpu, steal, samples, images = mark
        n = self.images - images
        if n <= 0:
            return None
        busy = (self.gpu_busy or [])[samples:]
        return {
            "cpu": _cpu_name(), "cpus": len(os.sched_getaffinity(0)),
            "cpu_seconds_per_image": (self.cpu_seconds - cpu) / n,
            "steal_seconds_per_image": (self.steal_seconds - steal) / n if self.steal_known else None,
            "gpu_busy": sum(busy) / len(busy) if busy else None,
        }
