"""AccelSetting: which accelerators are applied, with which parameters; the empty setting is the baseline."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from search_space.keys import canonical_json

ParamValue = int | float | bool


@dataclass(frozen=True)
class AccelSetting:
    """Accelerator name → parameters. Build through :meth:`of` so the mapping is frozen and complete."""

    methods: Mapping[str, Mapping[str, ParamValue]] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, methods: Mapping[str, Mapping[str, ParamValue]]) -> AccelSetting:
        frozen = {name: MappingProxyType(dict(params)) for name, params in sorted(methods.items())}
        return cls(MappingProxyType(frozen))

    @classmethod
    def baseline(cls) -> AccelSetting:
        return cls.of({})

    @classmethod
    def from_key(cls, key: str) -> AccelSetting:
        return cls.of(json.loads(key))

    @property
    def is_baseline(self) -> bool:
        return not self.methods

    @property
    def key(self) -> str:
        return canonical_json(self.as_dict())

    def as_dict(self) -> dict[str, dict[str, ParamValue]]:
        return {name: dict(params) for name, params in self.methods.items()}

    def __iter__(self) -> Iterator[tuple[str, Mapping[str, ParamValue]]]:
        return iter(self.methods.items())

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AccelSetting) and other.key == self.key
