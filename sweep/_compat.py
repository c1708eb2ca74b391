"""Import-time fix for CPU-only torch beside a CUDA-built torchvision wheel.

PyPI only has CUDA builds of torchvision for Linux. With the CPU build of torch its compiled ops cannot load,
and ``import torchvision`` then fails while registering fake kernels for those ops; transformers and
open_clip import torchvision, so nothing would import. sweep uses only torchvision's pure-Python transforms,
so when the ops library cannot load we skip the two modules that register kernels for it. Import this module
before diffusers, transformers or open_clip.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import types

log = logging.getLogger(__name__)

_KERNEL_REGISTRATIONS = ("torchvision._meta_registrations", "torchvision._autograd_registrations")


def _make_torchvision_importable() -> None:
    if "torchvision" in sys.modules:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    import torch

    library = os.path.join(spec.submodule_search_locations[0], "_C.so")
    if not os.path.exists(library):
        return
    try:
        torch.ops.load_library(library)
    except OSError:
        log.debug("torchvision ops cannot load with this torch build; importing torchvision without them")
        for name in _KERNEL_REGISTRATIONS:
            sys.modules.setdefault(name, types.ModuleType(name))


_make_torchvision_importable()
