"""Environment: the device and core library versions a measurement was made with.

Speed-ups from one GPU are not those of another, so every stored speed belongs to one environment. Its key is
the device, Python, and torch / diffusers / transformers: what every measurement runs on. The packages of an
acceleration method (DeepCache, tomesd, tgate, cache-dit...) are not part of it: a speed record carries the
versions of exactly the packages its own setting's methods declare (``packages_key``), so installing or
upgrading one method's package changes the key of no result that does not use it.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata

from search_space.keys import canonical_json

CORE_LIBRARIES = ("torch", "diffusers", "transformers")
"""What every measurement runs on: their versions are part of the environment's key."""


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    return {p: version(p) for p in packages}


def packages_key(packages: Iterable[str]) -> str:
    """The versions of ``packages`` beyond the environment's own libraries, as a key ("" where none)."""
    extra = sorted(set(packages) - set(CORE_LIBRARIES))
    return canonical_json(package_versions(extra)) if extra else ""


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Environment:
    device: str
    libraries: dict[str, str] = field(hash=False)
    """The core libraries' versions and Python's."""

    @classmethod
    def detect(cls, device: str) -> Environment:
        import torch

        dev = torch.device(device)
        if dev.type == "cuda":
            name = torch.cuda.get_device_name(dev)
        else:
            name = f"cpu: {_cpu_name()} ({torch.get_num_threads()} threads)"
        return cls(name, {**package_versions(CORE_LIBRARIES), "python": platform.python_version()})

    @property
    def key(self) -> str:
        return canonical_json({"device": self.device, **self.libraries})

    def state(self, n: int) -> Environment:
        """The same machine and libraries in its ``n``-th state (2, 3, ...): what a failed canary opens, so
        that timings from a machine in another state are kept apart, never mixed nor taken as stored."""
        base = self.device.split(" [state ")[0]
        libraries = {k: v for k, v in self.libraries.items() if k != "state"}
        return self if n == 1 else Environment(f"{base} [state {n}]", {**libraries, "state": str(n)})
