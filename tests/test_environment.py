"""The environment's key holds what every measurement runs on; a speed record adds its own methods' packages."""

from __future__ import annotations

from importlib import metadata

import pytest

from search_space.keys import canonical_json
from search_space.setting import AccelSetting
from storage.measurements import SpeedResult, speeds_for
from sweep.accelerators import ACCELERATORS, setting_packages_key
from sweep.measurement.environment import CORE_LIBRARIES, Environment


def test_the_key_of_a_fixed_environment_is_pinned() -> None:
    env = Environment("NVIDIA H100 80GB HBM3", {"torch": "2.11.0+cu130", "diffusers": "0.42.1", "transformers": "5.24.0",
                                                "python": "3.12.3"})
    assert env.key == ('{"device":"NVIDIA H100 80GB HBM3","diffusers":"0.42.1","python":"3.12.3",'
                       '"torch":"2.11.0+cu130","transformers":"5.24.0"}')


def test_detection_records_the_core_libraries_and_python_only() -> None:
    import platform

    env = Environment.detect("cpu")
    assert env.libraries == {"torch": metadata.version("torch"), "diffusers": metadata.version("diffusers"),
                             "transformers": metadata.version("transformers"), "python": platform.python_version()}
    assert env.device.startswith("cpu: ")


def _alone(name: str) -> AccelSetting:
    return AccelSetting.of({name: {p.name: p.default for p in ACCELERATORS[name].params}})


@pytest.mark.parametrize("name", sorted(ACCELERATORS))
def test_a_setting_is_keyed_by_exactly_its_own_methods_packages(name: str) -> None:
    own = sorted(set(ACCELERATORS[name].packages) - set(CORE_LIBRARIES))
    expected = canonical_json({p: metadata.version(p) for p in own}) if own else ""
    assert setting_packages_key(_alone(name)) == expected
    # no other method's package: installing or upgrading one changes no other method's key
    for other in set(ACCELERATORS) - {name}:
        for package in set(ACCELERATORS[other].packages) - set(ACCELERATORS[name].packages):
            assert package not in setting_packages_key(_alone(name))


def test_the_baseline_and_a_combination() -> None:
    assert setting_packages_key(AccelSetting.baseline()) == ""
    both = AccelSetting.of({"deepcache": {"cache_interval": 3, "cache_branch_id": 0}, "tome": {"ratio": 0.5, "max_downsample": 1}})
    assert setting_packages_key(both) == canonical_json({"DeepCache": metadata.version("DeepCache"),
                                                         "tomesd": metadata.version("tomesd")})


def _speed(packages_key: str, speedup: float, status: str = "done") -> SpeedResult:
    return SpeedResult("k", status, None, "random", speedup, 0.05, "timing set", 1.0, 2.0, packages_key=packages_key)


def test_speeds_of_other_package_versions_are_kept_apart() -> None:
    old, new = _speed('{"DeepCache":"0.1.0"}', 2.0), _speed('{"DeepCache":"0.1.1"}', 2.5)
    assert speeds_for([old, new], None)["k"] is new  # reading anywhere: the newest version's speed
    assert speeds_for([new, old], None)["k"] is old
    assert speeds_for([old, new], None, lambda key: '{"DeepCache":"0.1.0"}')["k"] is old  # measuring: this installation's
    assert speeds_for([old], None, lambda key: '{"DeepCache":"0.1.1"}') == {}
    failed_newer = _speed('{"DeepCache":"0.1.1"}', 0.0, "failed")
    assert speeds_for([old, failed_newer], None)["k"] is old  # a success is preferred to a failure
