"""The declared search space: axes in a TOML file, expanded into canonical base-config and setting keys."""

from search_space.base_config import BaseConfig
from search_space.setting import AccelSetting
from search_space.spec import (
    Entry,
    ProtocolSpec,
    Space,
    load_preset,
    load_space,
    parse_space,
    preset_names,
)

__all__ = [
    "AccelSetting", "BaseConfig", "Entry", "ProtocolSpec", "Space",
    "load_preset", "load_space", "parse_space", "preset_names",
]
