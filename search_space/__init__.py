"""The declared search space: axes in a TOML file, expanded into canonical base-config and setting keys.

The parser reads a space against a ``Catalogue`` (the methods, pipelines and schedulers a file may name);
``sweep.study.catalogue`` supplies sweep's and wraps the loaders.
"""

from search_space.base_config import BaseConfig
from search_space.catalogue import Catalogue, ParamSpec
from search_space.setting import AccelSetting
from search_space.spec import Entry, ProtocolSpec, Space, preset_names

__all__ = ["AccelSetting", "BaseConfig", "Catalogue", "Entry", "ParamSpec", "ProtocolSpec", "Space", "preset_names"]
