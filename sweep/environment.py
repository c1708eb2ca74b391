"""Environment: the device and library versions a measurement was made with.

Speed-ups from one GPU are not those of another, so every stored result belongs to one environment.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from importlib import metadata

from search_space.keys import canonical_json

LIBRARIES = ("torch", "diffusers", "transformers", "open_clip_torch", "DeepCache", "tomesd")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


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

    @classmethod
    def detect(cls, device: str) -> Environment:
        import torch

        dev = torch.device(device)
        if dev.type == "cuda":
            name = torch.cuda.get_device_name(dev)
        else:
            name = f"cpu: {_cpu_name()} ({torch.get_num_threads()} threads)"
        libraries = {lib: _version(lib) for lib in LIBRARIES}
        libraries["python"] = platform.python_version()
        return cls(name, libraries)

    @property
    def key(self) -> str:
        return canonical_json({"device": self.device, **self.libraries})
