"""sweep's catalogue of what a space file may name, and the space loaders that use it.

The methods are the accelerator registry, the pipelines the alias registry, the schedulers diffusers' scheduler
classes; search_space/ reads spaces against it without importing anything of sweep/.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from search_space import spec
from search_space.catalogue import Catalogue
from search_space.spec import Space
from sweep.accelerators import ACCELERATORS
from sweep.pipelines.loader import scheduler_names, scheduler_problem
from sweep.pipelines.registry import PIPELINES, SYNONYMS

CATALOGUE = Catalogue(methods=ACCELERATORS, pipelines=PIPELINES, schedulers=scheduler_names, synonyms=SYNONYMS,
                      scheduler_problem=scheduler_problem)  # type: ignore[arg-type]


def parse_space(data: Mapping[str, object], source: str) -> Space:
    return spec.parse_space(data, source, CATALOGUE)


def load_space(path: str | Path) -> Space:
    return spec.load_space(path, CATALOGUE)


def load_preset(name: str) -> Space:
    return spec.load_preset(name, CATALOGUE)


def with_weights(space: Space, weights: str) -> Space:
    return spec.with_weights(space, weights, CATALOGUE)
